"""Parallel text for sequence-to-sequence distillation: a generated translation task and user-provided corpora.

The generated task translates a small English-like language into a made-up verb-final one. Its point is that one
source has many valid translations, drawn at random, so the training data is multi-modal and a student has to
pick a mode (the setting where Kim & Rush 2016 find sequence-level KD matters most).

Source grammar (every choice uniform unless a probability is given):
    S    -> [TIME] NP VERB NP [PP]        TIME with p 0.4, PP with p 0.5
    NP   -> DET [ADJ] NOUN                ADJ with p 0.5
    PP   -> PREP DET PLACE
Target (each source word has 1 to 3 target synonyms, drawn with probabilities 1; 0.7/0.3; 0.6/0.3/0.1):
    NP   -> [DET'] (ADJ' NOUN' | NOUN' ADJ')   adjective after the noun with p 0.6; "the" -> "ko" with p 0.7,
                                               "a" -> "na" with p 0.4, otherwise left out (optional words)
    the subject is followed by "ga", the object by "wo"; subject-object-verb with p 0.7, else object-subject-verb
    PP'  -> [DET'] PLACE' PREP'                 at the start of the sentence or just before the verb (p 0.5 each)
    TIME'                                       at the start (p 0.6) or after the verb
    VERB' [yo]                                  the particle "yo" with p 0.3
The target words are fixed made-up syllable strings (seed 0), whatever the data seed. Tokens are lower-case
words separated by single spaces; the vocabulary of each side is every word the grammar can produce, after the
four special tokens of `kdrepro.seq2seq`. Sources are drawn with a seeded generator and never repeat across
splits (test first, then validation, then training). A training source has one translation; a validation or
test source has `references` independent draws, all of them references for BLEU.

User corpora (profile `paper`, e.g. WMT14 or IWSLT) are pre-tokenised text, either one pair per line with a
separator (`train.tsv`) or two aligned files (`train.en` and `train.de`); see `load_corpus`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from kdrepro.data import DataFileError, Split, note_source, text_lines
from kdrepro.seq2seq import EOS, PAD, SPECIALS, UNK

Sentence = list[str]

NOUNS = ("dog", "cat", "bird", "horse", "child", "teacher", "farmer", "doctor", "king", "fox", "wolf", "girl",
         "boy", "fish", "cow", "sheep", "goat", "mouse", "lion", "tiger", "bear", "duck", "frog", "owl", "snake",
         "rabbit", "soldier", "baker", "singer", "nurse")
ADJECTIVES = ("big", "small", "old", "young", "red", "black", "happy", "angry", "quick", "lazy", "tall", "short",
              "sad", "brave", "clever", "poor", "rich", "tired", "hungry", "green")
VERBS = ("sees", "likes", "follows", "helps", "finds", "calls", "feeds", "meets", "chases", "hears", "watches",
         "loves", "hates", "visits", "greets", "pushes", "pulls", "teaches", "paints", "hides")
PLACES = ("park", "river", "forest", "city", "garden", "market", "village", "school", "house", "field")
TIMES = ("today", "yesterday", "tomorrow", "tonight")
PREPOSITIONS = ("in", "near")
SYNONYM_WEIGHTS = {1: (1.0,), 2: (0.7, 0.3), 3: (0.6, 0.3, 0.1)}
PARTICLES = {"the": ("ko", 0.7), "a": ("na", 0.4)}   # target word and the probability it is said at all


@dataclass(frozen=True)
class Vocabulary:
    """Words of one language, the special tokens first; unknown words map to <unk>."""

    words: tuple[str, ...]
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.words[: len(SPECIALS)] != SPECIALS:
            raise ValueError(f"a vocabulary starts with the special tokens {SPECIALS}")
        object.__setattr__(self, "index", {w: i for i, w in enumerate(self.words)})

    @classmethod
    def of(cls, sentences: list[Sentence], max_size: int | None = None) -> Vocabulary:
        """The `max_size` most frequent words (ties alphabetical), after the special tokens."""
        if max_size is not None:
            check_vocab_size(max_size)
        counts = Counter(w for s in sentences for w in s)
        ranked = sorted(counts, key=lambda w: (-counts[w], w))
        return cls(SPECIALS + tuple(ranked[: None if max_size is None else max_size - len(SPECIALS)]))

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, sentence: Sentence) -> list[int]:
        return [self.index.get(w, UNK) for w in sentence]

    def decode(self, ids: list[int]) -> Sentence:
        return [self.words[i] for i in ids]


def check_vocab_size(vocab_size: int) -> None:
    if vocab_size <= len(SPECIALS):
        raise ValueError(f"vocab_size={vocab_size} leaves no room for a word after the {len(SPECIALS)} special tokens "
                         f"{SPECIALS}: ask for more than {len(SPECIALS)}")


@dataclass(frozen=True)
class Parallel:
    """Aligned sources and targets; `references[i]` holds every reference of source i (its target first)."""

    sources: list[Sentence]
    targets: list[Sentence]
    references: list[list[Sentence]]

    def __post_init__(self) -> None:
        if not len(self.sources) == len(self.targets) == len(self.references):
            raise ValueError(f"{len(self.sources)} sources, {len(self.targets)} targets and "
                             f"{len(self.references)} reference lists must be as many")

    def __len__(self) -> int:
        return len(self.sources)

    def with_targets(self, targets: list[Sentence]) -> Parallel:
        """The same sources and references, trained towards other targets (a teacher's outputs, say)."""
        return Parallel(self.sources, targets, self.references)


@dataclass(frozen=True)
class TranslationData:
    name: str
    source_vocab: Vocabulary
    target_vocab: Vocabulary
    train: Parallel
    val: Parallel
    test: Parallel

    def split(self, part: Parallel) -> Split:
        """Padded token ids: x the sources (N, S), y the targets followed by EOS (N, T)."""
        return Split(pad([self.source_vocab.encode(s) for s in part.sources]),
                     pad([self.target_vocab.encode(t) + [EOS] for t in part.targets]))

    def sources(self, part: Parallel) -> torch.Tensor:
        return pad([self.source_vocab.encode(s) for s in part.sources])


def pad(rows: list[list[int]]) -> torch.Tensor:
    """Right-padded (N, longest) int64 tensor."""
    width = max((len(r) for r in rows), default=0)
    return torch.tensor([r + [PAD] * (width - len(r)) for r in rows], dtype=torch.long).reshape(len(rows), width)


# --- the generated task ------------------------------------------------------------------------------------------

def _made_up_words(count: int) -> list[str]:
    """`count` distinct pronounceable words, the same on every call (the target language does not change)."""
    rng = np.random.default_rng(0)
    consonants, vowels, taken = "bdfghklmnprstvz", "aeiou", {"ko", "na", "ga", "wo", "yo"}
    words = []
    while len(words) < count:
        word = "".join(rng.choice(list(consonants)) + rng.choice(list(vowels)) for _ in range(rng.integers(2, 4)))
        if word not in taken:
            taken.add(word)
            words.append(word)
    return words


def lexicon() -> dict[str, tuple[str, ...]]:
    """Each content word and preposition of the source language -> its target synonyms, most frequent first."""
    content = NOUNS + ADJECTIVES + VERBS + PLACES + TIMES + PREPOSITIONS
    sizes = [1 + i % 3 for i in range(len(content))]
    pool = iter(_made_up_words(sum(sizes)))
    return {word: tuple(next(pool) for _ in range(size)) for word, size in zip(content, sizes)}


class Grammar:
    """Draws source sentences and their translations (module docstring) from a numpy generator."""

    def __init__(self, rng: np.random.Generator):
        self.rng, self.lexicon = rng, lexicon()

    def _pick(self, options: tuple[str, ...]) -> str:
        return options[self.rng.integers(len(options))]

    def _chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def source(self) -> Sentence:
        def noun_phrase() -> Sentence:
            adjective = [self._pick(ADJECTIVES)] if self._chance(0.5) else []
            return [self._pick(("the", "a"))] + adjective + [self._pick(NOUNS)]
        time = [self._pick(TIMES)] if self._chance(0.4) else []
        place = [self._pick(PREPOSITIONS), self._pick(("the", "a")), self._pick(PLACES)] if self._chance(0.5) else []
        return time + noun_phrase() + [self._pick(VERBS)] + noun_phrase() + place

    def translate(self, source: Sentence) -> Sentence:
        """One translation of a source sentence, every free choice drawn at random."""
        words = list(source)
        time = [self._word(words.pop(0))] if words[0] in TIMES else []
        verb_at = next(i for i, w in enumerate(words) if w in VERBS)
        subject, verb, rest = words[:verb_at], words[verb_at], words[verb_at + 1:]
        place_at = next((i for i, w in enumerate(rest) if w in PREPOSITIONS), len(rest))
        obj, place = rest[:place_at], rest[place_at:]
        subject_t, object_t = self._noun_phrase(subject) + ["ga"], self._noun_phrase(obj) + ["wo"]
        core = subject_t + object_t if self._chance(0.7) else object_t + subject_t
        place_t = self._noun_phrase(place[1:]) + [self._word(place[0])] if place else []
        if self._chance(0.5):
            core = place_t + core
        else:
            core = core + place_t
        core = core + [self._word(verb)] + (["yo"] if self._chance(0.3) else [])
        return time + core if self._chance(0.6) else core + time

    def _word(self, word: str) -> str:
        synonyms = self.lexicon[word]
        return synonyms[self.rng.choice(len(synonyms), p=SYNONYM_WEIGHTS[len(synonyms)])]

    def _noun_phrase(self, phrase: Sentence) -> Sentence:
        determiner, *adjective, noun = phrase
        particle, said = PARTICLES[determiner]
        words = [self._word(noun)]
        if adjective:
            words = words + [self._word(adjective[0])] if self._chance(0.6) else [self._word(adjective[0])] + words
        return ([particle] if self._chance(said) else []) + words


@lru_cache(maxsize=4)   # one draw per process: 08 and 09 read the same task (a second or two each time)
def generate(seed: int, train_size: int, val_size: int, test_size: int, references: int = 4) -> TranslationData:
    """The generated task (module docstring): identical for a given seed. Callers share it: never modify it."""
    if min(train_size, val_size, test_size) < 1 or references < 1:
        raise ValueError("every split needs at least one sentence and every source at least one reference")
    grammar = Grammar(np.random.default_rng(seed))
    sizes, seen, drawn = (test_size, val_size, train_size), set(), []
    while len(drawn) < sum(sizes):
        source = grammar.source()
        if " ".join(source) not in seen:
            seen.add(" ".join(source))
            drawn.append(source)
    test, val, train = drawn[:test_size], drawn[test_size: test_size + val_size], drawn[test_size + val_size:]

    def part(sources: list[Sentence], count: int) -> Parallel:
        refs = [[grammar.translate(s) for _ in range(count)] for s in sources]
        return Parallel(sources, [r[0] for r in refs], refs)

    source_words = sorted(set(NOUNS + ADJECTIVES + VERBS + PLACES + TIMES + PREPOSITIONS + ("the", "a")))
    target_words = sorted({w for synonyms in lexicon().values() for w in synonyms} | {"ko", "na", "ga", "wo", "yo"})
    return TranslationData("generated", Vocabulary(SPECIALS + tuple(source_words)),
                           Vocabulary(SPECIALS + tuple(target_words)),
                           part(train, 1), part(val, references), part(test, references))


# --- user-provided corpora ---------------------------------------------------------------------------------------

class CorpusError(DataFileError):
    """A parallel corpus file is missing, empty, not UTF-8 or misaligned; the message names the file and the line."""


def read_pairs(path: Path, separator: str = "\t") -> tuple[list[Sentence], list[Sentence]]:
    """One pair per line, `source<separator>target`, both sides tokenised by whitespace."""
    lines = _lines(path)
    sources, targets = [], []
    for number, line in enumerate(lines, start=1):
        if line.count(separator) != 1:
            raise CorpusError(f"{path}, line {number}: expected one {separator!r} between source and target, "
                              f"found {line.count(separator)}")
        source, target = (side.split() for side in line.split(separator))
        if not source or not target:
            raise CorpusError(f"{path}, line {number}: the {'source' if not source else 'target'} is empty")
        sources.append(source)
        targets.append(target)
    return sources, targets


def read_aligned(source_path: Path, target_path: Path) -> tuple[list[Sentence], list[Sentence]]:
    """Two files, line i of one the translation of line i of the other, both tokenised by whitespace."""
    source_lines, target_lines = _lines(source_path), _lines(target_path)
    if len(source_lines) != len(target_lines):
        raise CorpusError(f"misaligned corpus: {source_path} has {len(source_lines)} lines, {target_path} has "
                          f"{len(target_lines)}; line i of one must translate line i of the other")
    for number, (source, target) in enumerate(zip(source_lines, target_lines), start=1):
        for path, side in ((source_path, source), (target_path, target)):
            if not side.strip():
                raise CorpusError(f"{path}, line {number} is empty while its partner is not: the files are "
                                  "misaligned or hold a blank line")
    return [s.split() for s in source_lines], [t.split() for t in target_lines]


def _lines(path: Path) -> list[str]:
    """The sentences of a UTF-8 file, one a line (`text_lines`: line i is what `wc -l` and `sed -n ip` call line i)."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path} not found")
    lines = text_lines(path, CorpusError)
    if not any(line.strip() for line in lines):
        raise CorpusError(f"{path} is empty")
    while lines and not lines[-1].strip():  # a trailing blank line is not a sentence
        lines.pop()
    return lines


def read_split(directory: Path, split: str, languages: tuple[str, str]) -> tuple[list[Sentence], list[Sentence]]:
    """`<split>.<src>` and `<split>.<tgt>` if both exist, else `<split>.tsv`."""
    directory = Path(directory)
    source_path, target_path = (directory / f"{split}.{language}" for language in languages)
    if source_path.is_file() or target_path.is_file():
        return read_aligned(source_path, target_path)
    if (directory / f"{split}.tsv").is_file():
        return read_pairs(directory / f"{split}.tsv")
    raise CorpusError(f"no {split} split in {directory}: expected {source_path.name} and {target_path.name} "
                      f"(one sentence a line, aligned) or {split}.tsv (source<TAB>target a line); put the corpus "
                      "there or set KDREPRO_DATA")


def load_corpus(directory: Path, languages: tuple[str, str], vocab_size: int, max_len: int) -> TranslationData:
    """A pre-tokenised corpus with train, dev and test splits. Training pairs longer than `max_len` words on
    either side are dropped; each side's vocabulary is its `vocab_size` most frequent training words."""
    check_vocab_size(vocab_size)  # before reading a corpus of millions of lines
    if max_len < 1:
        raise ValueError(f"max_len={max_len} keeps no sentence: it must be at least 1 word")
    train_sources, train_targets = read_split(directory, "train", languages)
    keep = [i for i, (s, t) in enumerate(zip(train_sources, train_targets)) if len(s) <= max_len and len(t) <= max_len]
    if not keep:
        raise CorpusError(f"{directory}: no training pair has at most {max_len} words on both sides")
    train_sources, train_targets = [train_sources[i] for i in keep], [train_targets[i] for i in keep]

    def part(sources: list[Sentence], targets: list[Sentence]) -> Parallel:
        return Parallel(sources, targets, [[t] for t in targets])

    dev, test = (part(*read_split(directory, split, languages)) for split in ("dev", "test"))
    note_source(f"corpus {Path(directory).name}", str(directory))
    return TranslationData(Path(directory).name, Vocabulary.of(train_sources, vocab_size),
                           Vocabulary.of(train_targets, vocab_size), part(train_sources, train_targets), dev, test)


# --- BLEU ---------------------------------------------------------------------------------------------------------

def corpus_bleu(hypotheses: list[Sentence], references: list[list[Sentence]]) -> tuple[float, str]:
    """sacrebleu's corpus BLEU of detokenised (space-joined) outputs against every reference, and its signature."""
    from sacrebleu.metrics import BLEU
    counts = {len(r) for r in references}
    if len(counts) != 1:
        raise ValueError(f"every source needs the same number of references, found {sorted(counts)}")
    streams = [[" ".join(r[k]) for r in references] for k in range(counts.pop())]
    bleu = BLEU()
    score = bleu.corpus_score([" ".join(h) for h in hypotheses], streams)
    return score.score, str(bleu.get_signature())


def closest_by_bleu(candidates: list[Sentence], reference: Sentence) -> int:
    """Index of the candidate with the highest smoothed sentence BLEU against the reference (Seq-Inter's choice);
    the first such candidate on ties, so a better-scored beam hypothesis wins."""
    from sacrebleu.metrics import BLEU
    bleu = BLEU(effective_order=True)  # smoothing "exp", sacrebleu's default for sentences
    scores = [bleu.sentence_score(" ".join(c), [" ".join(reference)]).score for c in candidates]
    return max(range(len(scores)), key=lambda i: (scores[i], -i))
