import hashlib

import torch

from kdrepro.seeds import derive, generator, seeded


def test_derive_is_the_first_63_bits_of_the_sha256_of_seed_and_names():
    expected = int.from_bytes(hashlib.sha256(b"3/init/student").digest()[:8], "big") >> 1
    assert derive(3, "init", "student") == expected
    assert 0 <= derive(0) < 2**63


def test_streams_differ_by_seed_and_by_name_and_repeat_exactly():
    assert derive(0, "order") != derive(1, "order")
    assert derive(0, "order") != derive(0, "augment")
    assert derive(0, "stage", 1) == derive(0, "stage", "1")  # names are text
    assert torch.equal(torch.rand(4, generator=generator(5, "x")), torch.rand(4, generator=generator(5, "x")))


def test_seeded_draws_from_its_stream_and_leaves_the_global_generator_alone():
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    with seeded(7, "init", "teacher"):
        inside = torch.rand(3)
    assert torch.equal(torch.random.get_rng_state(), before)
    torch.manual_seed(derive(7, "init", "teacher"))
    assert torch.equal(inside, torch.rand(3))
