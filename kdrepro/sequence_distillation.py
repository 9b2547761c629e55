"""Offline distillation of sequence models (Kim & Rush 2016): the training objectives and the teacher's data.

- Word-KD: the student matches the frozen teacher's next-word distribution at every reference position.
- Seq-KD: the student is trained with plain NLL on the teacher's beam-search output for every training source.
- Seq-Inter: from the teacher's beam, the candidate closest to the reference (smoothed sentence BLEU).
The teacher is kept out of every optimiser and in evaluation mode, as in `kdrepro.schemes`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kdrepro.data import Batch
from kdrepro.losses.response import check_hinton_weights
from kdrepro.losses.sequence import sequence_nll, word_kd_loss
from kdrepro.schemes import freeze
from kdrepro.seq2seq import PAD, Seq2Seq, beam_search, strip
from kdrepro.train import Objective
from kdrepro.translation import Sentence, TranslationData, closest_by_bleu


def trim(batch: Batch) -> Batch:
    """The batch without the columns that are padding in every row: rows are padded to the longest sentence of
    the whole split, and an LSTM pays for every column."""
    source_width = int((batch.x != PAD).sum(dim=1).max())
    target_width = int((batch.y != PAD).sum(dim=1).max())
    return batch._replace(x=batch.x[:, :source_width], y=batch.y[:, :target_width])


class SequenceCrossEntropy(Objective):
    """L_NLL on the split's targets: the baseline on references, Seq-KD and Seq-Inter on the teacher's outputs."""

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        batch = trim(batch)
        return sequence_nll(model(batch.x, batch.y), batch.y)


class WordDistillation(Objective):
    """hard_weight * L_NLL + (1 - hard_weight) * L_WORD-KD, the frozen teacher run on the same targets."""

    def __init__(self, teacher: nn.Module, hard_weight: float, temperature: float = 1.0):
        check_hinton_weights(temperature, hard_weight)  # fail before any training, not at the first step
        self.teacher, self.hard_weight, self.temperature = freeze(teacher), hard_weight, temperature

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        batch = trim(batch)
        with torch.no_grad():
            teacher_logits = self.teacher(batch.x, batch.y)
        return word_kd_loss(model(batch.x, batch.y), teacher_logits, batch.y, self.hard_weight, self.temperature)


def teacher_outputs(teacher: Seq2Seq, data: TranslationData, beam: int, inter_beam: int, max_len: int,
                    batch_size: int = 500, device: torch.device | str = "cpu") -> dict[str, list[Sentence]]:
    """The teacher's translations of every training source: "seqkd", the best of a `beam`-wide search, and
    "seqinter", the candidate of an `inter_beam`-wide search closest to the reference by smoothed sentence BLEU.
    One search serves both when the widths are equal."""
    freeze(teacher)
    sources = data.sources(data.train).to(device)
    seqkd, seqinter = [], []
    for start in range(0, len(sources), batch_size):
        rows = sources[start: start + batch_size]
        rows = rows[:, : int((rows != PAD).sum(dim=1).max())]
        wide, scores = beam_search(teacher, rows, inter_beam, max_len)
        narrow = wide if beam == inter_beam else beam_search(teacher, rows, beam, max_len)[0]
        seqkd += [data.target_vocab.decode(ids) for ids in strip(narrow[:, 0])]
        for i, (candidates, finite) in enumerate(zip(wide.unbind(0), scores.isfinite().unbind(0))):
            # a beam wider than the search space holds empty slots (score -inf): they are not candidates
            words = [data.target_vocab.decode(ids) for ids in strip(candidates[finite])]
            reference = data.train.targets[start + i]
            seqinter.append(words[closest_by_bleu(words, reference)])
    return {"seqkd": seqkd, "seqinter": seqinter}
