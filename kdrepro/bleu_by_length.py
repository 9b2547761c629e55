"""What on-policy distillation is said to repair, measured: BLEU by source length, greedy and with beam search.

A student trained on fixed outputs (references, or a teacher's translations) conditions at training time on
prefixes it did not write; decoding, it conditions on its own, and an early mistake takes it where it never
trained (exposure bias). The longer the output, the more such steps, so a student that suffers from it loses more
BLEU on long sentences than on short ones. `BleuByLength` reads, for the validation and test sets: corpus BLEU at
each beam, the BLEU of each source-length bucket, and the drop from the shortest bucket to the longest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from kdrepro.measures import Measure
from kdrepro.models import count_parameters
from kdrepro.translation import Parallel, corpus_bleu
from kdrepro.translation_task import TranslationTask, translate


def bucket_names(edges: tuple[int, ...]) -> list[str]:
    """Bucket labels by source words, from the upper edges of all but the last: (6, 8) -> 1-6, 7-8, 9+."""
    lows = (1,) + tuple(edge + 1 for edge in edges)
    return [f"{low}-{high}" for low, high in zip(lows, edges)] + [f"{lows[-1]}+"]


def bucket_of(length: int, edges: tuple[int, ...]) -> int:
    """The index of the bucket a source of `length` words falls in."""
    return sum(length > edge for edge in edges)


@dataclass(frozen=True)
class BleuByLength(Measure):
    """Corpus BLEU of the model's translations (sacrebleu, every reference of a source) at each of `beams` (1:
    greedy), on the test set ("bleu_beamB") and the validation set ("val_bleu_beamB"); per source-length bucket
    ("bleu_beamB_len1-6", ...: `length_edges` are the buckets' upper edges in source words, the last bucket open);
    and the drop from the shortest bucket to the longest ("bleu_drop_beamB" = BLEU of the first bucket minus BLEU
    of the last; larger: worse on long outputs)."""

    beams: tuple[int, ...]
    max_len: int
    length_edges: tuple[int, ...]
    batch_size: int = 500

    def __post_init__(self) -> None:
        if not self.length_edges or list(self.length_edges) != sorted(set(self.length_edges)):
            raise ValueError(f"length_edges={self.length_edges} must be increasing source lengths, at least one")

    def __call__(self, model: nn.Module, data: TranslationTask) -> dict[str, Any]:
        result: dict[str, Any] = {"parameters": count_parameters(model)}
        for prefix, part in (("", data.corpus.test), ("val_", data.corpus.val)):
            sources = data.corpus.sources(part).to(next(model.parameters()).device)
            for beam in self.beams:
                hypotheses = [data.target_vocab.decode(ids)
                              for ids in translate(model, sources, beam, self.max_len, self.batch_size)]
                result.update({prefix + name: value for name, value in self.scores(hypotheses, part, beam).items()})
        return result

    def scores(self, hypotheses: list[list[str]], part: Parallel, beam: int) -> dict[str, Any]:
        """BLEU over the whole part, per length bucket, and the drop, for one beam's hypotheses."""
        scores: dict[str, Any] = {}
        scores[f"bleu_beam{beam}"], scores["bleu_signature"] = corpus_bleu(hypotheses, part.references)
        buckets = [bucket_of(len(source), self.length_edges) for source in part.sources]
        names = bucket_names(self.length_edges)
        for index, name in enumerate(names):
            rows = [i for i, bucket in enumerate(buckets) if bucket == index]
            scores[f"bleu_beam{beam}_len{name}"] = corpus_bleu([hypotheses[i] for i in rows],
                                                               [part.references[i] for i in rows])[0] \
                if rows else float("nan")
        scores[f"bleu_drop_beam{beam}"] = scores[f"bleu_beam{beam}_len{names[0]}"] - \
            scores[f"bleu_beam{beam}_len{names[-1]}"]
        return scores
