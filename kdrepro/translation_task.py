"""Translation on the experiment layer: the data an arm trains on, the target sets it may learn from, what is measured.

- `TranslationTask`: a corpus (`kdrepro.translation`) with its training pairs as token ids, and its cache key;
- the data views of sequence-level KD (Kim & Rush 2016): every training source with a translation of the frozen
  teacher's as its target: `SeqKDTargets` (the best of its beam search, section 3.2) and `SeqInterTargets` (of its
  beam, the candidate closest to the reference, section 3.3). The references themselves are the default view,
  `kdrepro.arms.Rows()`;
- `BleuAndSpeed`: the test set translated at several beam widths, its BLEU and the decoding speed.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from kdrepro.arms import spec_key
from kdrepro.cache import Cache
from kdrepro.data import Split
from kdrepro.measures import Measure
from kdrepro.models import count_parameters
from kdrepro.results import measured_on
from kdrepro.seq2seq import PAD, Seq2Seq, beam_search, greedy, strip
from kdrepro.train import Recipe
from kdrepro.translation import Parallel, Sentence, TranslationData, Vocabulary, closest_by_bleu, corpus_bleu


@dataclass(frozen=True)
class TranslationTask:
    """A parallel corpus as an arm trains on it: `train` holds the training pairs as padded token ids (x: the
    sources; y: the references, each followed by EOS), beside the corpus's sentences, which decoding, BLEU and the
    teacher's translations read."""

    corpus: TranslationData
    train: Split

    @classmethod
    def of(cls, corpus: TranslationData) -> TranslationTask:
        return cls(corpus, corpus.split(corpus.train))

    def to(self, device: torch.device | str) -> TranslationTask:
        """The training ids on `device`; the sentences stay where they are."""
        return replace(self, train=Split(self.train.x.to(device), self.train.y.to(device)))

    def for_seed(self, seed: int) -> TranslationTask:
        """What run `seed` trains on: every run the same sentences (the generated task is drawn once, by its own
        seed; a corpus is what it is)."""
        return self

    @property
    def name(self) -> str:
        return self.corpus.name

    @property
    def source_vocab(self) -> Vocabulary:
        return self.corpus.source_vocab

    @property
    def target_vocab(self) -> Vocabulary:
        return self.corpus.target_vocab

    def key(self) -> dict[str, Any]:
        """What identifies the corpus in a cache key: its name, sizes, vocabularies and a digest of every sentence
        (two draws of the generated task share a name and sizes, never their sentences)."""
        c = self.corpus
        return {"corpus": c.name, "sizes": [len(c.train), len(c.val), len(c.test)],
                "vocab": [len(c.source_vocab), len(c.target_vocab)], "sentences": self._digest}

    @cached_property
    def _digest(self) -> str:
        digest = hashlib.sha256()
        for words in (self.corpus.source_vocab.words, self.corpus.target_vocab.words):
            digest.update("\n".join(words).encode() + b"\0")
        for part in (self.corpus.train, self.corpus.val, self.corpus.test):
            references = [r for refs in part.references for r in refs]
            for sentences in (part.sources, part.targets, references):
                digest.update("\n".join(" ".join(s) for s in sentences).encode() + b"\0")
        return digest.hexdigest()[:16]


# --- decoding -----------------------------------------------------------------------------------------------------

def chunks(sources: Tensor, size: int) -> Iterator[tuple[int, Tensor]]:
    """(first row, rows) of `sources` in chunks of `size` rows, each without the columns that are padding in all
    its rows: decoding pays for every column of the encoder."""
    for start in range(0, len(sources), size):
        rows = sources[start: start + size]
        yield start, rows[:, : int((rows != PAD).sum(dim=1).max())]


def translate(model: Seq2Seq, sources: Tensor, beam: int, max_len: int, batch_size: int = 500) -> list[list[int]]:
    """Each source's translation as token ids (without EOS): greedy search at beam 1, else beam search's best."""
    ids = []
    for _, rows in chunks(sources, batch_size):
        tokens = greedy(model, rows, max_len) if beam == 1 else beam_search(model, rows, beam, max_len)[0][:, 0]
        ids += strip(tokens)
    return ids


# --- the teacher's translations as targets (Kim & Rush 2016, sections 3.2 and 3.3) --------------------------------

@dataclass(frozen=True)
class TeacherTranslations:
    """A data view that replaces the target of every training source by a translation of the frozen teacher's:
    of its `beam`-wide search (at most `max_len` words), the candidate `choose` picks. The translations are
    computed once per teacher and cached, keyed by the teacher's weights, the data and this view."""

    beam: int
    max_len: int
    batch_size: int = 500

    def __post_init__(self) -> None:
        if self.beam < 1 or self.max_len < 1:
            raise ValueError(f"{type(self).__name__}(beam={self.beam}, max_len={self.max_len}): both must be at "
                             "least 1")

    def choose(self, candidates: list[Sentence], reference: Sentence) -> int:
        """Which of a source's candidates (best first) becomes its target."""
        raise NotImplementedError

    def split(self, data: TranslationTask, teacher: nn.Module | None, seed: int) -> tuple[Split, None]:
        """Every training source, its target the teacher's translation; all rows are kept."""
        if teacher is None:
            raise ValueError(f"{type(self).__name__} trains on a teacher's translations, but the arm has no teacher; "
                             "give the arm a teacher")
        targets = self.translations(teacher, data)
        split = data.corpus.split(data.corpus.train.with_targets(targets))
        return Split(data.train.x, split.y.to(data.train.y.device)), None

    def recipe(self, recipe: Recipe, full_size: int, kept: int) -> Recipe:
        return recipe  # every row is kept: the same steps

    def translations(self, teacher: nn.Module, data: TranslationTask) -> list[Sentence]:
        """The chosen translation of every training source, from the cache when this teacher has made them."""
        device = next(teacher.parameters()).device
        key = {"view": spec_key(self), "teacher": weights_digest(teacher), "data": data.key(), "device": device.type}
        record = Cache().record("teacher-translations", key, lambda: {"targets": self.translate(teacher, data)})
        return record["targets"]

    def translate(self, teacher: nn.Module, data: TranslationTask) -> list[Sentence]:
        device = next(teacher.parameters()).device
        vocab, references, chosen = data.target_vocab, data.corpus.train.targets, []
        for start, rows in chunks(data.train.x.to(device), self.batch_size):
            tokens, scores = beam_search(teacher, rows, self.beam, self.max_len)
            for i, (candidates, finite) in enumerate(zip(tokens.unbind(0), scores.isfinite().unbind(0))):
                # a beam wider than the search space holds empty slots (score -inf): they are not candidates
                words = [vocab.decode(ids) for ids in strip(candidates[finite])]
                chosen.append(words[self.choose(words, references[start + i])])
        return chosen


@dataclass(frozen=True)
class SeqKDTargets(TeacherTranslations):
    """Sequence-level KD's data: the teacher's best beam-search hypothesis for every training source, the mode
    of its sequence distribution, approximately (Kim & Rush 2016, section 3.2)."""

    def choose(self, candidates: list[Sentence], reference: Sentence) -> int:
        return 0


@dataclass(frozen=True)
class SeqInterTargets(TeacherTranslations):
    """Sequence-level interpolation's data: of the teacher's beam, the candidate closest to the reference by
    smoothed sentence BLEU, likely under the teacher and close to the truth (Kim & Rush 2016, section 3.3)."""

    def choose(self, candidates: list[Sentence], reference: Sentence) -> int:
        return closest_by_bleu(candidates, reference)


def weights_digest(model: nn.Module) -> str:
    """sha256 of a model's weights, names included: what its outputs depend on besides the code."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


# --- what is measured ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BleuAndSpeed(Measure):
    """The test set translated at each of `beams` (1: greedy), in batches of `batch_size` sources: corpus BLEU
    against every reference of a source (sacrebleu, its signature kept), and the tokens produced per second (EOS
    counted). A speed depends on the machine, so the record keeps where and when it was measured
    ("speed_measured_on"): read back from the cache by a later run, it still says so. The validation set is
    translated at each of `val_beams` for its BLEU alone ("val_bleu_beamB"), where choices and preconditions are
    judged."""

    beams: tuple[int, ...]
    max_len: int
    batch_size: int = 500
    val_beams: tuple[int, ...] = ()

    def __call__(self, model: nn.Module, data: TranslationTask) -> dict[str, Any]:
        test = data.corpus.test
        result = {"parameters": count_parameters(model), "speed_measured_on": measured_on()}
        for beam in self.beams:
            started = time.perf_counter()
            ids = self.translated(model, data, test, beam)
            seconds = time.perf_counter() - started
            hypotheses = [data.target_vocab.decode(i) for i in ids]
            result[f"bleu_beam{beam}"], result["bleu_signature"] = corpus_bleu(hypotheses, test.references)
            result[f"tokens_per_s_beam{beam}"] = sum(len(i) + 1 for i in ids) / seconds
        val = data.corpus.val
        for beam in self.val_beams:
            hypotheses = [data.target_vocab.decode(i) for i in self.translated(model, data, val, beam)]
            result[f"val_bleu_beam{beam}"] = corpus_bleu(hypotheses, val.references)[0]
        return result

    def translated(self, model: nn.Module, data: TranslationTask, part: Parallel, beam: int) -> list[list[int]]:
        sources = data.corpus.sources(part).to(next(model.parameters()).device)
        return translate(model, sources, beam, self.max_len, self.batch_size)
