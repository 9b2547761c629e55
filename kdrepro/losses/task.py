"""Task losses that regularise without a teacher: the controls that tell a teacher's knowledge from a smoothing of
the labels (Mason-Williams et al. 2025 ask KD papers for such controls)."""

import torch.nn.functional as F
from torch import Tensor


def label_smoothing_loss(logits: Tensor, labels: Tensor, smoothing: float) -> Tensor:
    """The cross-entropy with smoothed labels (Szegedy et al. 2016, section 7), averaged over the batch:

        H(q, softmax(z)) = - sum_k q_k log softmax(z)_k,   q_k = (1 - eps) [k = y] + eps / K

    for K classes and eps = `smoothing`: every wrong class gets the same share of eps, so the targets carry no
    knowledge of which wrong classes are alike (what a teacher's soft targets would add)."""
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}: it is the share of the target moved "
                         "from the label to the uniform distribution")
    return F.cross_entropy(logits, labels, label_smoothing=smoothing)
