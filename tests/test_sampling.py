"""Sampling from the translation student: the distribution it draws from, checked on a tiny model against
probabilities computed another way (exhaustive scoring, and the teacher-forced logits)."""

import math

import pytest
import torch

from kdrepro.seq2seq import BOS, EOS, PAD, Seq2Seq, sample
from kdrepro.seeds import generator

SOURCE = torch.tensor([[4, 5, 6]])
DRAWS = 20_000


def tiny_model(seed: int = 0) -> Seq2Seq:
    """Four special tokens and two words, so EOS, <unk> and the two words can be produced."""
    torch.manual_seed(seed)
    model = Seq2Seq(src_vocab=7, tgt_vocab=6, layers=1, hidden=8, embedding=6)
    with torch.no_grad():  # sharper than the initialisation, so the outcomes differ clearly in probability
        model.out.weight.mul_(4.0)
    return model.eval()


def frequencies(rows: torch.Tensor) -> dict[tuple[int, ...], float]:
    unique, counts = rows.unique(dim=0, return_counts=True)
    return {tuple(t for t in row if t != PAD): count / len(rows) for row, count in zip(unique.tolist(), counts.tolist())}


def close_enough(frequency: float, probability: float) -> bool:
    """Within four standard errors of a binomial proportion over DRAWS draws (and a rounding floor)."""
    return abs(frequency - probability) <= 4 * math.sqrt(probability * (1 - probability) / DRAWS) + 1e-3


def forced_probability(model: Seq2Seq, words: list[int]) -> float:
    """p(y | x) from the teacher-forced logits, each position's softmax over the words that can be produced
    (padding and BOS excluded, as decoding excludes them): another path through the model than `sample`'s steps."""
    logits = model(SOURCE, torch.tensor([words]))[0].detach()
    logits[:, [PAD, BOS]] = -math.inf
    return math.exp(sum(logits[t].log_softmax(dim=0)[w].item() for t, w in enumerate(words)))


def test_at_temperature_one_sequences_come_with_their_probability_under_the_model():
    model = tiny_model()
    # every output of at most 2 words: EOS alone, or a first word (<unk>, 4, 5) and a second (EOS or one of them)
    outcomes = [[EOS]] + [[first, second] for first in (3, 4, 5) for second in (EOS, 3, 4, 5)]
    probabilities = {tuple(words): forced_probability(model, words) for words in outcomes}
    assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    seen = frequencies(sample(model, SOURCE.expand(DRAWS, -1), max_len=2, generator=generator(0, "test")))
    assert set(seen) <= set(probabilities)
    assert all(close_enough(seen.get(words, 0.0), p) for words, p in probabilities.items())


def test_a_temperature_samples_the_first_word_from_the_softmax_of_the_logits_over_it():
    model, temperature = tiny_model(seed=1), 0.5
    logits = model(SOURCE, torch.tensor([[EOS]]))[0, 0].detach()   # teacher-forced: the first position's logits
    logits[[PAD, BOS]] = -math.inf                                  # never produced
    expected = (logits / temperature).softmax(dim=0)
    first = sample(model, SOURCE.expand(DRAWS, -1), max_len=1, temperature=temperature,
                   generator=generator(1, "test"))[:, 0]
    seen = torch.bincount(first, minlength=6).float() / DRAWS
    assert seen[PAD] == 0 and seen[BOS] == 0
    assert all(close_enough(seen[k].item(), expected[k].item()) for k in range(6))
    flatter = (logits / 2.0).softmax(dim=0)
    assert expected.max() > flatter.max()   # a low temperature sharpens: the check above can tell them apart


def test_each_row_stops_at_its_eos_and_is_padded_after_it():
    model = tiny_model(seed=2)
    with torch.no_grad():
        model.out.bias[EOS] = 1.5   # EOS likely but not certain: rows end at different steps
    rows = sample(model, torch.tensor([[4, 5, 6], [6, 4, PAD]]).repeat(200, 1), max_len=5,
                  generator=generator(2, "test"))
    for row in rows.tolist():
        if EOS in row:
            assert all(t == PAD for t in row[row.index(EOS) + 1:])
        assert PAD not in row[: row.index(EOS) if EOS in row else len(row)]
    lengths = {row.index(EOS) if EOS in row else 5 for row in rows.tolist()}
    assert len(lengths) > 1 and rows.shape[1] <= 5


def test_samples_come_from_the_generator_alone_and_leave_the_global_one_and_the_mode_as_they_were():
    model = tiny_model().train()
    state = torch.get_rng_state()
    first = sample(model, SOURCE.expand(50, -1), max_len=4, generator=generator(3, "test"))
    again = sample(model, SOURCE.expand(50, -1), max_len=4, generator=generator(3, "test"))
    other = sample(model, SOURCE.expand(50, -1), max_len=4, generator=generator(4, "test"))
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert torch.equal(torch.get_rng_state(), state) and model.training


def test_a_temperature_that_is_not_positive_is_refused():
    with pytest.raises(ValueError, match="temperature=0 must be positive"):
        sample(tiny_model(), SOURCE, max_len=3, temperature=0)
