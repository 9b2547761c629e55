"""Translation on the experiment layer: the task's key, the network spec, the teacher's translations as data views
(chosen, cached, keyed by the teacher), and the BLEU and speed measure."""

import pytest
import torch

from kdrepro.results import measured_on
from kdrepro.seq2seq import EOS, PAD, Seq2SeqNet, greedy, strip
from kdrepro.translation import corpus_bleu, generate
from kdrepro.translation_task import (BleuAndSpeed, SeqInterTargets, SeqKDTargets, TeacherTranslations,
                                      TranslationTask, chunks, translate, weights_digest)

TASK = TranslationTask.of(generate(seed=3, train_size=24, val_size=4, test_size=6, references=2))
TEACHER_NET = Seq2SeqNet(layers=1, hidden=8, embedding=8, init="teacher")


def teacher() -> torch.nn.Module:
    return TEACHER_NET.build(0, TASK).eval()


# --- the task and its network -------------------------------------------------------------------------------------

def test_the_training_ids_are_the_corpus_split_and_the_key_tells_two_draws_apart():
    corpus = TASK.corpus
    assert torch.equal(TASK.train.x, corpus.split(corpus.train).x) and torch.equal(TASK.train.y,
                                                                                   corpus.split(corpus.train).y)
    again = TranslationTask.of(generate(seed=3, train_size=24, val_size=4, test_size=6, references=2))
    other = TranslationTask.of(generate(seed=4, train_size=24, val_size=4, test_size=6, references=2))
    assert again.key() == TASK.key()
    assert other.key() != TASK.key() and {k: v for k, v in other.key().items() if k != "sentences"} == {
        k: v for k, v in TASK.key().items() if k != "sentences"}
    assert TASK.key()["sizes"] == [24, 4, 6]


def test_a_network_spec_builds_from_the_datas_vocabularies_and_its_init_stream():
    student = Seq2SeqNet(layers=1, hidden=8, embedding=6)
    a, b, other = student.build(0, TASK), student.build(0, TASK), Seq2SeqNet(1, 8, 6, init="other").build(0, TASK)
    assert a.src_embed.num_embeddings == len(TASK.source_vocab) and a.out.out_features == len(TASK.target_vocab)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.out.weight, other.out.weight)


def test_chunks_keep_the_rows_in_order_and_drop_columns_padded_in_all_their_rows():
    sources = torch.tensor([[4, 5, 6, PAD], [4, PAD, PAD, PAD], [7, 8, PAD, PAD]])
    assert [(start, rows.tolist()) for start, rows in chunks(sources, 2)] == [
        (0, [[4, 5, 6], [4, PAD, PAD]]), (2, [[7, 8]])]


# --- the teacher's translations as targets ------------------------------------------------------------------------

def test_seq_kd_takes_the_best_hypothesis_and_seq_inter_the_one_closest_to_the_reference():
    candidates = [["ko", "tabi", "ga"], ["na", "zepu", "wo", "lami"], ["ko", "zepu", "wo"]]
    assert SeqKDTargets(beam=3, max_len=5).choose(candidates, ["na", "zepu", "wo", "lami"]) == 0
    assert SeqInterTargets(beam=3, max_len=5).choose(candidates, ["na", "zepu", "wo", "lami"]) == 1
    assert SeqInterTargets(beam=3, max_len=5).choose(candidates, ["ko", "zepu", "wo"]) == 2


def test_with_a_beam_of_one_both_views_train_on_the_greedy_translation(isolated):
    model = teacher()
    greedy_words = [TASK.target_vocab.decode(ids) for ids in strip(greedy(model, TASK.train.x, 7))]
    for view in (SeqKDTargets(beam=1, max_len=7), SeqInterTargets(beam=1, max_len=7)):
        split, rows = view.split(TASK, model, seed=0)
        assert rows is None and torch.equal(split.x, TASK.train.x)
        targets = [[t for t in row if t != PAD] for row in split.y.tolist()]
        assert targets == [TASK.target_vocab.encode(words) + [EOS] for words in greedy_words]


def test_the_translations_are_cached_by_the_teachers_weights(isolated, monkeypatch):
    view, model = SeqKDTargets(beam=2, max_len=6), teacher()
    first = view.translations(model, TASK)
    assert len(first) == len(TASK.corpus.train) and len(list((isolated / "cache" / "runs").iterdir())) == 1
    monkeypatch.setattr(TeacherTranslations, "translate", lambda *args: pytest.fail("the cache was not used"))
    assert view.translations(teacher(), TASK) == first  # another object with the same weights
    retrained = teacher()
    with torch.no_grad():
        retrained.out.bias += 1.0
    with pytest.raises(pytest.fail.Exception, match="the cache was not used"):
        view.translations(retrained, TASK)


def test_a_teacher_view_without_a_teacher_says_so():
    with pytest.raises(ValueError, match="SeqKDTargets trains on a teacher's translations, but the arm has no"):
        SeqKDTargets(beam=2, max_len=6).split(TASK, None, seed=0)
    with pytest.raises(ValueError, match="both must be at least 1"):
        SeqInterTargets(beam=0, max_len=6)


def test_the_weights_digest_follows_every_weight():
    model = teacher()
    before = weights_digest(model)
    assert weights_digest(teacher()) == before
    with torch.no_grad():
        model.combine.weight[0, 0] += 1e-3
    assert weights_digest(model) != before


# --- BLEU and speed -----------------------------------------------------------------------------------------------

def test_bleu_and_speed_measure_every_beam_and_say_where_the_speeds_were_measured():
    model = teacher()
    record = BleuAndSpeed(beams=(1, 3), max_len=6)(model, TASK)
    assert set(record) == {"parameters", "speed_measured_on", "bleu_signature", "bleu_beam1", "bleu_beam3",
                           "tokens_per_s_beam1", "tokens_per_s_beam3"}
    assert record["speed_measured_on"] == measured_on() and "nrefs:2" in record["bleu_signature"]
    assert record["parameters"] == sum(p.numel() for p in model.parameters())
    assert all(0 <= record[f"bleu_beam{b}"] <= 100 and record[f"tokens_per_s_beam{b}"] > 0 for b in (1, 3))


def test_bleu_and_speed_score_the_validation_sources_against_their_references_at_the_validation_beams():
    model, val = teacher(), TASK.corpus.val
    record = BleuAndSpeed(beams=(1,), max_len=6, val_beams=(1, 3))(model, TASK)
    for beam in (1, 3):
        ids = translate(model, TASK.corpus.sources(val), beam, max_len=6)
        expected = corpus_bleu([TASK.target_vocab.decode(i) for i in ids], val.references)[0]
        assert record[f"val_bleu_beam{beam}"] == expected
    assert "tokens_per_s_beam3" not in record and "val_bleu_beam1" not in BleuAndSpeed((1,), 6)(model, TASK)


def test_translate_is_greedy_at_beam_one_in_any_chunk_size():
    model, sources = teacher(), TASK.corpus.sources(TASK.corpus.test)
    assert translate(model, sources, beam=1, max_len=6, batch_size=4) == strip(greedy(model, sources, 6))
