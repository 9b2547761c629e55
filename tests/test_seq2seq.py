"""The attention encoder-decoder and its decoders: beam search against exhaustive search on a tiny vocabulary."""

import pytest
import torch

from kdrepro.seq2seq import BOS, EOS, PAD, Seq2Seq, beam_search, brute_force, greedy, sequence_log_prob, strip


def tiny_model(target_words: int = 2, seed: int = 0) -> Seq2Seq:
    """Four special tokens plus `target_words` words: EOS, <unk> and the words can be produced."""
    torch.manual_seed(seed)
    model = Seq2Seq(src_vocab=7, tgt_vocab=4 + target_words, layers=2, hidden=8, embedding=6)
    with torch.no_grad():  # sharper distributions than the initialisation, so greedy and beam search disagree
        model.out.weight.mul_(8.0)
    return model.eval()


SOURCE = torch.tensor([[4, 5, 6]])


def test_beam_wide_enough_to_keep_everything_finds_the_exhaustive_ranking():
    model = tiny_model()
    exhaustive = brute_force(model, SOURCE, max_len=3)
    assert len(exhaustive) == 1 + 3 + 9 + 27  # EOS; x EOS; x y EOS; x y z without EOS (x, y, z: unk or a word)
    tokens, scores = beam_search(model, SOURCE, beam=len(exhaustive), max_len=3)
    found = [(row, score) for row, score in zip(tokens[0].tolist(), scores[0].tolist())]
    for (expected, expected_score), (row, score) in zip(exhaustive[:10], found[:10]):
        assert [t for t in row if t != PAD] == expected
        assert score == pytest.approx(expected_score, abs=1e-5)


def test_beam_search_with_length_normalisation_matches_the_exhaustive_ranking():
    model = tiny_model(seed=3)
    exhaustive = brute_force(model, SOURCE, max_len=3, length_penalty=1.0)
    tokens, scores = beam_search(model, SOURCE, beam=len(exhaustive), max_len=3, length_penalty=1.0)
    assert [t for t in tokens[0, 0].tolist() if t != PAD] == exhaustive[0][0]
    assert scores[0, 0].item() == pytest.approx(exhaustive[0][1], abs=1e-5)


def test_a_narrow_beam_never_beats_the_exhaustive_best_and_scores_what_it_returns():
    model = tiny_model(seed=1)
    best_score = brute_force(model, SOURCE, max_len=4)[0][1]
    tokens, scores = beam_search(model, SOURCE, beam=3, max_len=4)
    assert scores[0, 0].item() <= best_score + 1e-5
    assert torch.allclose(sequence_log_prob(model, SOURCE.expand(3, -1), tokens[0]), scores[0], atol=1e-5)
    assert (scores[0, :-1] >= scores[0, 1:]).all()  # best first


def test_beam_of_one_is_greedy_search():
    model = tiny_model(target_words=5, seed=2)
    sources = torch.tensor([[4, 5, 6, 6], [6, 4, PAD, PAD], [5, PAD, PAD, PAD]])
    beam, _ = beam_search(model, sources, beam=1, max_len=6)
    assert strip(beam[:, 0]) == strip(greedy(model, sources, max_len=6))


def test_a_batch_decodes_each_source_as_if_alone_whatever_its_padding():
    model = tiny_model(target_words=5, seed=4)
    sources = torch.tensor([[4, 5, 6, 6], [6, 4, PAD, PAD]])
    together, together_scores = beam_search(model, sources, beam=4, max_len=5)
    for i, length in enumerate((4, 2)):
        alone, alone_scores = beam_search(model, sources[i: i + 1, :length], beam=4, max_len=5)
        assert strip(alone[0]) == strip(together[i])
        assert torch.allclose(alone_scores[0], together_scores[i], atol=1e-5)


def test_source_padding_changes_no_logit():
    model = tiny_model()
    target = torch.tensor([[4, 5, EOS]])
    padded = torch.cat([SOURCE, torch.full((1, 3), PAD)], dim=1)
    assert torch.allclose(model(SOURCE, target), model(padded, target), atol=1e-6)


def test_padding_and_bos_are_never_produced():
    model = tiny_model()
    with torch.no_grad():
        model.out.bias[PAD] = 100.0
        model.out.bias[BOS] = 100.0
    assert not set(greedy(model, SOURCE, max_len=4)[0].tolist()) & {BOS}
    assert greedy(model, SOURCE, max_len=4)[0, 0].item() not in (PAD, BOS)


def test_strip_cuts_at_the_end_of_sentence():
    assert strip(torch.tensor([[5, 6, EOS, PAD], [4, 4, 4, 4], [EOS, PAD, PAD, PAD]])) == [[5, 6], [4, 4, 4, 4], []]


def test_teacher_forced_logits_have_one_row_per_target_position():
    model = tiny_model(target_words=3)
    logits = model(torch.tensor([[4, 5], [6, PAD]]), torch.tensor([[4, 5, EOS], [6, EOS, PAD]]))
    assert logits.shape == (2, 3, 7)
