"""An attention LSTM encoder-decoder (Luong, Pham & Manning 2015), the family of Kim & Rush 2016, and its decoders.

Token ids 0..3 are the same in every vocabulary: padding, beginning and end of sentence, unknown word. Sequences
are right-padded; a target row holds its words, then EOS, then padding.

Global attention with the "general" score (Luong et al. 2015, eqs. 5-8):
    score(h_t, h_s) = h_t^T W_a h_s,  a_t = softmax_s(score),  c_t = sum_s a_t(s) h_s,
    h~_t = tanh(W_c [c_t; h_t]),  p(y_t | y_<t, x) = softmax(W_s h~_t).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from kdrepro.seeds import seeded

if TYPE_CHECKING:
    from kdrepro.data import Batch
    from kdrepro.translation_task import TranslationTask

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")

State = tuple[Tensor, Tensor]


class Encoded:
    """What the decoder attends to: encoder outputs, their projection W_a h_s (computed once), the source mask."""

    def __init__(self, memory: Tensor, keys: Tensor, mask: Tensor):
        self.memory, self.keys, self.mask = memory, keys, mask

    def repeat(self, times: int) -> Encoded:
        """Each source `times` times in a row: the layout of a beam of width `times`."""
        return Encoded(*(t.repeat_interleave(times, dim=0) for t in (self.memory, self.keys, self.mask)))


class Seq2Seq(nn.Module):
    """A stacked-LSTM encoder and decoder of `layers` x `hidden`, with Luong's global "general" attention.

    The decoder's initial state is the encoder's final state. Kim & Rush's teacher is 4 x 1000, students 2 x 500
    and 2 x 300. Input feeding (h~_{t-1} fed to the next step) is left out so training runs the decoder over the
    whole target at once.
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, layers: int, hidden: int, embedding: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        if layers < 1 or hidden < 1:
            raise ValueError(f"layers={layers} and hidden={hidden} must be at least 1")
        embedding = embedding or hidden
        between = dropout if layers > 1 else 0.0
        self.src_embed = nn.Embedding(src_vocab, embedding, padding_idx=PAD)
        self.tgt_embed = nn.Embedding(tgt_vocab, embedding, padding_idx=PAD)
        self.encoder = nn.LSTM(embedding, hidden, layers, batch_first=True, dropout=between)
        self.decoder = nn.LSTM(embedding, hidden, layers, batch_first=True, dropout=between)
        self.score = nn.Linear(hidden, hidden, bias=False)        # W_a
        self.combine = nn.Linear(2 * hidden, hidden, bias=False)  # W_c
        self.out = nn.Linear(hidden, tgt_vocab)                   # W_s
        self.drop = nn.Dropout(dropout)

    def encode(self, src: Tensor) -> tuple[Encoded, State]:
        mask = src != PAD
        lengths = mask.sum(dim=1).clamp_min(1).cpu()
        packed = pack_padded_sequence(self.drop(self.src_embed(src)), lengths, batch_first=True, enforce_sorted=False)
        outputs, state = self.encoder(packed)
        memory, _ = pad_packed_sequence(outputs, batch_first=True, total_length=src.shape[1])
        return Encoded(memory, self.score(memory), mask), state

    def attend(self, h: Tensor, encoded: Encoded) -> Tensor:
        """Logits of p(y_t | y_<t, x) from decoder states h (B, T, H)."""
        scores = h @ encoded.keys.transpose(1, 2)                               # (B, T, S)
        weights = scores.masked_fill(~encoded.mask[:, None, :], float("-inf")).softmax(dim=-1)
        context = weights @ encoded.memory
        return self.out(self.drop(torch.tanh(self.combine(torch.cat([context, h], dim=-1)))))

    def forward(self, src: Tensor, tgt: Tensor) -> Tensor:
        """Teacher-forced logits (B, T, V) for predicting every position of `tgt` (words, EOS, padding)."""
        encoded, state = self.encode(src)
        previous = torch.cat([torch.full_like(tgt[:, :1], BOS), tgt[:, :-1]], dim=1)
        h, _ = self.decoder(self.drop(self.tgt_embed(previous)), state)
        return self.attend(h, encoded)

    def step(self, previous: Tensor, state: State, encoded: Encoded) -> tuple[Tensor, State]:
        """log p(. | y_<t, x) for one step (B, V); padding and BOS can never be produced."""
        h, state = self.decoder(self.tgt_embed(previous)[:, None], state)
        log_probs = F.log_softmax(self.attend(h, encoded)[:, 0], dim=-1)
        return log_probs.index_fill(1, torch.tensor([PAD, BOS], device=log_probs.device), float("-inf")), state


@dataclass(frozen=True)
class Seq2SeqNet:
    """A `Seq2Seq` to train, as a spec (translation's `kdrepro.arms.Net`): `layers` x `hidden`, its embedding size
    and dropout, its vocabularies the data's. Its initial weights come from the stream `init` of the run's seed:
    students that share `init` start alike, the teacher has an init of its own."""

    layers: int
    hidden: int
    embedding: int
    dropout: float = 0.0
    init: str = "student"

    def build(self, seed: int, data: TranslationTask) -> Seq2Seq:
        with seeded(seed, "init", self.init):
            return Seq2Seq(len(data.source_vocab), len(data.target_vocab), self.layers, self.hidden, self.embedding,
                           self.dropout)


def trim(batch: Batch) -> Batch:
    """The batch without the columns that are padding in every row: rows are padded to the longest sentence of
    the whole split, and an LSTM pays for every column."""
    source_width = int((batch.x != PAD).sum(dim=1).max())
    target_width = int((batch.y != PAD).sum(dim=1).max())
    return batch._replace(x=batch.x[:, :source_width], y=batch.y[:, :target_width])


@torch.no_grad()
def greedy(model: Seq2Seq, src: Tensor, max_len: int) -> Tensor:
    """The most probable next word at every step, until EOS or `max_len` words: (B, <= max_len) token ids."""
    model.eval()
    encoded, state = model.encode(src)
    previous = torch.full((len(src),), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(len(src), dtype=torch.bool, device=src.device)
    words = []
    for _ in range(max_len):
        log_probs, state = model.step(previous, state, encoded)
        previous = log_probs.argmax(dim=-1).masked_fill(done, PAD)
        words.append(previous)
        done |= previous == EOS
        if done.all():
            break
    return torch.stack(words, dim=1)


@torch.no_grad()
def sample(model: Seq2Seq, src: Tensor, max_len: int, temperature: float = 1.0,
           generator: torch.Generator | None = None) -> Tensor:
    """Ancestral sampling, every source at once: y_t ~ softmax(log p(. | y_<t, x) / temperature), each row until it
    draws EOS or has `max_len` words; (B, <= max_len) token ids, padding after a row's EOS.

    The draws come from `generator` only (on the CPU or the model's device; never the global generator), so a run's
    samples are its seed's. At temperature 1 this is the model's own distribution over outputs (the student's
    "on-policy" outputs of Agarwal et al. 2024); padding and BOS are never drawn. Dropout is off while sampling and
    the model's mode is restored after."""
    if not temperature > 0:
        raise ValueError(f"temperature={temperature} must be positive; greedy decoding is `greedy`")
    was_training = model.training
    model.eval()
    encoded, state = model.encode(src)
    previous = torch.full((len(src),), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(len(src), dtype=torch.bool, device=src.device)
    draw_on = src.device if generator is None else generator.device
    words = []
    for _ in range(max_len):
        log_probs, state = model.step(previous, state, encoded)
        # the Gumbel-max trick: argmax_k (log p_k / T + G_k), G_k = -log(-log U_k), is a draw from softmax(log p / T)
        uniform = torch.rand(log_probs.shape, generator=generator, device=draw_on).to(src.device)
        drawn = (log_probs / temperature - torch.log(-torch.log(uniform))).argmax(dim=-1)
        previous = drawn.masked_fill(done, PAD)
        words.append(previous)
        done |= previous == EOS
        if done.all():
            break
    model.train(was_training)
    return torch.stack(words, dim=1)


@torch.no_grad()
def beam_search(model: Seq2Seq, src: Tensor, beam: int, max_len: int,
                length_penalty: float = 0.0) -> tuple[Tensor, Tensor]:
    """The `beam` best hypotheses of every source, best first: tokens (B, beam, L) and scores (B, beam).

    A hypothesis's score is sum_t log p(y_t | y_<t, x), divided by |y|^length_penalty (|y| counts EOS) when
    `length_penalty` > 0; the division is applied to the finished list, the search itself keeps raw sums.
    All sources are searched at once as B * beam rows. A hypothesis that has produced EOS keeps its slot and
    its score (it can only be extended by padding, at no cost), so finished and open hypotheses compete for
    the beam on equal terms. Slots that never held a hypothesis (beam larger than the search space) score -inf.
    """
    if beam < 1:
        raise ValueError(f"beam={beam} must be at least 1")
    model.eval()
    batch, device = len(src), src.device
    encoded, state = model.encode(src)
    encoded = encoded.repeat(beam)
    state = tuple(s.repeat_interleave(beam, dim=1) for s in state)
    scores = torch.full((batch, beam), float("-inf"), device=device)
    scores[:, 0] = 0.0                                   # one live hypothesis per source at the start
    tokens = torch.empty((batch * beam, 0), dtype=torch.long, device=device)
    previous = torch.full((batch * beam,), BOS, dtype=torch.long, device=device)
    done = torch.zeros(batch * beam, dtype=torch.bool, device=device)
    for _ in range(max_len):
        log_probs, state = model.step(previous, state, encoded)
        vocab = log_probs.shape[1]
        padding_only = torch.full_like(log_probs, float("-inf"))
        padding_only[:, PAD] = 0.0
        log_probs = torch.where(done[:, None], padding_only, log_probs)
        best, flat = (scores.reshape(-1, 1) + log_probs).reshape(batch, beam * vocab).topk(beam, dim=1)
        rows = (torch.arange(batch, device=device)[:, None] * beam + flat // vocab).reshape(-1)
        previous = (flat % vocab).reshape(-1)
        tokens = torch.cat([tokens[rows], previous[:, None]], dim=1)
        state = tuple(s[:, rows] for s in state)
        done = done[rows] | (previous == EOS)
        scores = best
        if done.all():
            break
    tokens = tokens.reshape(batch, beam, -1)
    if length_penalty > 0:
        lengths = (tokens != PAD).sum(dim=-1).clamp_min(1).float()
        scores = scores / lengths**length_penalty
        scores, order = scores.sort(dim=1, descending=True)
        tokens = tokens.gather(1, order[:, :, None].expand_as(tokens))
    return tokens, scores


@torch.no_grad()
def sequence_log_prob(model: Seq2Seq, src: Tensor, tgt: Tensor) -> Tensor:
    """log p(y | x) = sum_t log p(y_t | y_<t, x) of each target row (padding excluded), as decoding sees it."""
    model.eval()
    encoded, state = model.encode(src)
    previous = torch.full((len(src),), BOS, dtype=torch.long, device=src.device)
    total = torch.zeros(len(src), device=src.device)
    for t in range(tgt.shape[1]):
        log_probs, state = model.step(previous, state, encoded)
        word = tgt[:, t]
        total += torch.where(word != PAD, log_probs.gather(1, word.clamp_min(0)[:, None])[:, 0], 0.0)
        previous = word
    return total


def brute_force(model: Seq2Seq, src: Tensor, max_len: int,
                length_penalty: float = 0.0) -> list[tuple[list[int], float]]:
    """Every output of one source (a (1, S) tensor) with its score, best first: for tests on tiny vocabularies.

    The outputs are the sequences of producible words that end in EOS within `max_len` words, and those that
    reach `max_len` words without it.
    """
    words = [w for w in range(model.out.out_features) if w not in (PAD, BOS)]
    candidates = []
    for length in range(1, max_len + 1):
        for sequence in product(words, repeat=length):
            if EOS in sequence[:-1] or (length < max_len and sequence[-1] != EOS):
                continue
            candidates.append(list(sequence))
    width = max_len
    tgt = torch.tensor([c + [PAD] * (width - len(c)) for c in candidates])
    scores = sequence_log_prob(model, src.expand(len(candidates), -1), tgt)
    if length_penalty > 0:
        scores = scores / torch.tensor([len(c) for c in candidates], dtype=torch.float) ** length_penalty
    return sorted(zip(candidates, scores.tolist()), key=lambda pair: -pair[1])


def strip(tokens: Tensor) -> list[list[int]]:
    """Rows of token ids as lists, cut at (and without) the first EOS; padding dropped."""
    rows = []
    for row in tokens.tolist():
        row = row[: row.index(EOS)] if EOS in row else row
        rows.append([t for t in row if t != PAD])
    return rows
