"""BLEU by source length: the buckets, and each bucket's BLEU against a hand-made case."""

import math

import pytest

from kdrepro.bleu_by_length import BleuByLength, bucket_names, bucket_of
from kdrepro.translation import Parallel

REFERENCE = "ko ba ga na di wo tuke".split()


def test_buckets_are_named_by_source_words_and_the_last_is_open():
    assert bucket_names((6, 8)) == ["1-6", "7-8", "9+"]
    assert [bucket_of(n, (6, 8)) for n in (1, 6, 7, 8, 9, 30)] == [0, 0, 1, 1, 2, 2]


def test_a_student_right_on_short_sources_and_wrong_on_long_ones_drops_the_whole_scale():
    sources = [["w"] * 5, ["w"] * 6, ["w"] * 9, ["w"] * 10]
    part = Parallel(sources, [REFERENCE] * 4, [[REFERENCE]] * 4)
    hypotheses = [REFERENCE, REFERENCE, ["zu"] * 7, ["zu"] * 7]   # short: the reference; long: no word right
    scores = BleuByLength(beams=(1,), max_len=10, length_edges=(6, 8)).scores(hypotheses, part, beam=1)
    assert scores["bleu_beam1_len1-6"] == pytest.approx(100.0) and scores["bleu_beam1_len9+"] == pytest.approx(0.0)
    assert math.isnan(scores["bleu_beam1_len7-8"])   # no source of 7 or 8 words
    assert scores["bleu_drop_beam1"] == pytest.approx(100.0) and 0 < scores["bleu_beam1"] < 100


def test_length_edges_must_increase():
    with pytest.raises(ValueError, match="must be increasing"):
        BleuByLength(beams=(1,), max_len=10, length_edges=(8, 6))
