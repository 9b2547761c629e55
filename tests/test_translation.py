"""The generated translation task, the corpus readers and BLEU."""

import numpy as np
import pytest

from kdrepro.seq2seq import EOS, PAD, SPECIALS, UNK
from kdrepro.translation import (
    VERBS,
    CorpusError,
    Grammar,
    Vocabulary,
    closest_by_bleu,
    corpus_bleu,
    generate,
    lexicon,
    load_corpus,
    read_aligned,
    read_pairs,
)


@pytest.fixture(scope="module")
def task():
    return generate(seed=7, train_size=300, val_size=20, test_size=30, references=3)


def test_the_same_seed_generates_the_same_task_and_another_seed_another(task):
    again = generate(seed=7, train_size=300, val_size=20, test_size=30, references=3)
    assert again.train == task.train and again.test == task.test and again.target_vocab == task.target_vocab
    assert generate(seed=8, train_size=300, val_size=20, test_size=30, references=3).train != task.train


def test_splits_share_no_source_and_have_their_sizes(task):
    def sources(part):
        return {" ".join(s) for s in part.sources}
    assert (len(task.train), len(task.val), len(task.test)) == (300, 20, 30)
    assert len(sources(task.train) | sources(task.val) | sources(task.test)) == 350


def test_every_test_source_has_its_references_and_the_first_is_its_target(task):
    assert all(len(r) == 3 and r[0] == t for r, t in zip(task.test.references, task.test.targets))
    assert all(r == [t] for r, t in zip(task.train.references, task.train.targets))


def test_the_data_is_multimodal_one_source_many_translations():
    grammar = Grammar(np.random.default_rng(0))
    source = "yesterday the big dog sees a cat in the park".split()
    translations = {" ".join(grammar.translate(source)) for _ in range(200)}
    assert len(translations) > 20
    sees = lexicon()["sees"]
    for translation in translations:  # the verb is last but for the particle "yo" and the time word
        words = translation.split()
        assert "ga" in words and "wo" in words
        assert any(w in sees for w in words[-3:])


def test_the_vocabularies_cover_every_generated_word(task):
    split = task.split(task.train)
    assert not (split.x == UNK).any() and not (split.y == UNK).any()
    assert task.source_vocab.words[:4] == SPECIALS
    assert set(VERBS) <= set(task.source_vocab.words)


def test_target_rows_end_with_eos_then_padding(task):
    split = task.split(task.test)
    for row, target in zip(split.y.tolist(), task.test.targets):
        assert row[len(target)] == EOS and set(row[len(target) + 1:]) <= {PAD}


def test_vocabulary_from_text_ranks_by_frequency_and_maps_unknown_words():
    vocab = Vocabulary.of([["b", "a", "b"], ["c", "b", "a"]], max_size=6)
    assert vocab.words == SPECIALS + ("b", "a")
    assert vocab.encode(["a", "zzz"]) == [5, UNK] and vocab.decode([4, 5]) == ["b", "a"]


# --- corpora --------------------------------------------------------------------------------------------------

def test_pairs_file_is_read_and_tokenised(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("a small dog\tein kleiner Hund\nthe cat\tdie Katze\n\n")
    assert read_pairs(path) == ([["a", "small", "dog"], ["the", "cat"]], [["ein", "kleiner", "Hund"], ["die", "Katze"]])


def test_a_line_without_the_separator_is_named(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("a dog\tein Hund\nno separator here\n")
    with pytest.raises(CorpusError, match=r"train.tsv, line 2: expected one '\\t'"):
        read_pairs(path)


def test_an_empty_side_or_an_empty_file_is_named(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("a dog\t  \n")
    with pytest.raises(CorpusError, match="line 1: the target is empty"):
        read_pairs(path)
    path.write_text("\n\n")
    with pytest.raises(CorpusError, match="pairs.tsv is empty"):
        read_pairs(path)


def test_two_files_of_different_lengths_are_misaligned(tmp_path):
    (tmp_path / "train.en").write_text("a\nb\nc\n")
    (tmp_path / "train.de").write_text("x\ny\n")
    with pytest.raises(CorpusError, match="misaligned corpus: .*train.en has 3 lines, .*train.de has 2"):
        read_aligned(tmp_path / "train.en", tmp_path / "train.de")


def test_a_blank_line_on_one_side_is_named(tmp_path):
    (tmp_path / "train.en").write_text("a\n\nc\n")
    (tmp_path / "train.de").write_text("x\ny\nz\n")
    with pytest.raises(CorpusError, match="train.en, line 2 is empty"):
        read_aligned(tmp_path / "train.en", tmp_path / "train.de")


def test_a_corpus_folder_in_either_layout(tmp_path):
    (tmp_path / "train.en").write_text("a b\nc d e f\n")
    (tmp_path / "train.de").write_text("x\ny\n")
    (tmp_path / "dev.tsv").write_text("a\tx\n")
    (tmp_path / "test.en").write_text("c\n")
    (tmp_path / "test.de").write_text("y\n")
    data = load_corpus(tmp_path, ("en", "de"), vocab_size=100, max_len=3)
    assert data.train.sources == [["a", "b"]]  # the four-word sentence is longer than max_len
    assert data.val.targets == [["x"]] and data.test.references == [[["y"]]]
    (tmp_path / "test.en").unlink()
    (tmp_path / "test.de").unlink()
    with pytest.raises(CorpusError, match="no test split .*test.en and test.de .* or test.tsv"):
        load_corpus(tmp_path, ("en", "de"), vocab_size=100, max_len=3)


# --- BLEU -----------------------------------------------------------------------------------------------------

def test_bleu_of_a_reference_is_100_and_the_signature_counts_references():
    references = [[["the", "cat", "sat", "on", "it"], ["a", "cat", "sat", "there", "now"]]] * 2
    score, signature = corpus_bleu([["a", "cat", "sat", "there", "now"]] * 2, references)
    assert score == pytest.approx(100.0) and "nrefs:2" in signature and "version:2.6.0" in signature
    assert corpus_bleu([["dog"]] * 2, references)[0] == pytest.approx(0.0)


def test_seq_inter_picks_the_candidate_closest_to_the_reference():
    reference = "ko dog ga cat wo sees".split()
    candidates = [["cat", "wo", "sees"], "ko dog ga cat wo sees".split(), "dog ga cat wo sees".split()]
    assert closest_by_bleu(candidates, reference) == 1
    assert closest_by_bleu([["x"], ["y"]], reference) == 0  # ties: the better-ranked beam hypothesis


# --- corpora as users have them -------------------------------------------------------------------------------

@pytest.mark.parametrize("separator", ["\u2028", "\x85", "\x0c"], ids=["U+2028", "U+0085", "form feed"])
def test_only_newlines_end_a_sentence_so_unicode_separators_keep_two_files_aligned(tmp_path, separator):
    # str.splitlines would also end a line at the separator: four lines a side, silently paired as
    # a -> A B, b -> C, c -> D, d e -> E (wc -l counts three in each file)
    (tmp_path / "train.en").write_text(f"a{separator}b\nc\nd e\n", encoding="utf-8")
    (tmp_path / "train.de").write_text(f"A B\nC{separator}D\nE\n", encoding="utf-8")
    sources, targets = read_aligned(tmp_path / "train.en", tmp_path / "train.de")
    assert sources == [["a", "b"], ["c"], ["d", "e"]] and targets == [["A", "B"], ["C", "D"], ["E"]]


def test_the_line_counts_of_a_misaligned_corpus_are_those_wc_counts(tmp_path):
    (tmp_path / "train.en").write_text("a\u2028b\nc\n", encoding="utf-8")
    (tmp_path / "train.de").write_text("A\nB\nC\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="train.en has 2 lines, .*train.de has 3"):
        read_aligned(tmp_path / "train.en", tmp_path / "train.de")


def test_windows_line_ends_and_a_byte_order_mark_are_not_part_of_any_word(tmp_path):
    (tmp_path / "train.tsv").write_bytes(b"\xef\xbb\xbfthe dog\tder Hund\r\na cat\teine Katze\r\n")
    assert read_pairs(tmp_path / "train.tsv") == ([["the", "dog"], ["a", "cat"]],
                                                  [["der", "Hund"], ["eine", "Katze"]])


def test_bytes_that_are_not_utf8_are_named_with_their_file_and_line(tmp_path):
    (tmp_path / "train.de").write_bytes("ein Hund\nK\u00e4se\n".encode("latin-1"))
    with pytest.raises(CorpusError, match=r"train.de, line 2: byte 0xe4 is not UTF-8; convert the file to UTF-8"):
        read_aligned(tmp_path / "train.de", tmp_path / "train.de")


@pytest.mark.parametrize("vocab_size", [-5, 0, 4])
def test_a_vocabulary_without_room_for_a_word_is_refused(tmp_path, vocab_size):
    (tmp_path / "train.tsv").write_text("a\tx\n")
    with pytest.raises(ValueError, match=f"vocab_size={vocab_size} leaves no room for a word after the 4 special"):
        load_corpus(tmp_path, ("en", "de"), vocab_size=vocab_size, max_len=3)
    with pytest.raises(ValueError, match=f"vocab_size={vocab_size}"):
        Vocabulary.of([["a"]], max_size=vocab_size)
