"""CUB-200-2011's index files, as a user may have them: damaged, hand-edited or saved in another encoding."""

import pytest
from tiny_profiles import write_cub

from kdrepro.cub import load_cub_raw
from kdrepro.data import DataFileError


@pytest.fixture
def cub(data_dir):
    """A tiny CUB folder: species 1, 2, 101 and 102, three images each (ids 1-12)."""
    write_cub(data_dir, per_class=3)
    return data_dir / "CUB_200_2011"


def replace_line(path, number: int, text: str) -> None:
    lines = path.read_text().split("\n")
    lines[number - 1] = text
    path.write_text("\n".join(lines))


def test_text_that_is_not_utf8_is_named_with_its_line(cub):
    path = cub / "images.txt"
    path.write_bytes(path.read_bytes().replace(b"4 002.Bird_2", b"4 002.Bird_\xe9"))  # Latin-1's e-acute
    with pytest.raises(DataFileError, match=r"images.txt, line 4: byte 0xe9 is not UTF-8; convert the file"):
        load_cub_raw(size=4)


def test_a_byte_order_mark_and_windows_line_ends_are_read_as_plain_lines(cub):
    for name in ("images.txt", "image_class_labels.txt", "classes.txt"):
        path = cub / name
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes().replace(b"\n", b"\r\n"))
    raw = load_cub_raw(size=4)
    assert raw.y_train.tolist() == [0, 0, 0, 1, 1, 1] and raw.classes[0] == "Bird 1"


def test_a_label_that_is_not_a_number_is_named_with_its_line(cub):
    replace_line(cub / "image_class_labels.txt", 5, "5 two")
    with pytest.raises(DataFileError, match=r"image_class_labels.txt, line 5: image 5 has the class 'two', not a "
                                            r"class id in 1..200"):
        load_cub_raw(size=4)


@pytest.mark.parametrize("label", ["0", "201", "²"])
def test_a_label_outside_1_to_200_is_refused(cub, label):
    replace_line(cub / "image_class_labels.txt", 2, f"2 {label}")
    with pytest.raises(DataFileError, match=f"image_class_labels.txt, line 2: image 2 has the class '{label}', not a "
                                            r"class id in 1..200 \(classes.txt\)"):
        load_cub_raw(size=4)


def test_an_image_id_listed_twice_is_refused_not_dropped(cub):
    replace_line(cub / "images.txt", 7, "6 002.Bird_2/Bird_2_0000.jpg")
    with pytest.raises(DataFileError, match="images.txt, line 7: id 6 is already on line 6"):
        load_cub_raw(size=4)
