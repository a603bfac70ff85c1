"""Lesson 02: the reference values on the real files, the stand-ins, and malformed files."""

from __future__ import annotations

import json

import pytest
from conftest import load_lesson, one_line_error, run_lesson_cli, run_lesson_main

from common.data import DataError

STEM = "02_data_as_tensors"
WINE = "dlwpt/p1ch4/tabular-wine/winequality-white.csv"
BIKES = "dlwpt/p1ch4/bike-sharing-dataset/hour-fixed.csv"
TEXT = "dlwpt/p1ch4/jane-austen/1342-0.txt"
CATS = [f"dlwpt/p1ch4/image-cats/cat{number}.png" for number in (1, 2, 3)]


def test_clean_words_strips_punctuation_and_curly_quotes():
    lesson = load_lesson(STEM)
    assert lesson.clean_words("\u201cImpossible, Mr. Bennet!\u201d\nWhy-") == [
        "impossible",
        "mr",
        "bennet",
        "why",
    ]


def test_offline_stand_ins_run_and_are_announced_once_each(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.delenv("LESSONS_REQUIRE_REAL_DATA", raising=False)
    metrics = run_lesson_main(STEM, tmp_path, "--data-dir", str(empty), "--no-download")
    out = capsys.readouterr().out
    assert out.count("NOTICE") == 4  # wine, bikes, text, and the image folder as one dataset
    assert out.count("image-cats folder") == 1
    saved = json.loads((tmp_path / STEM / "metrics.json").read_text())
    assert saved["data"] == "stand-in" and len(saved["stand_ins"]) == 4
    assert metrics["image_batch_shape"] == [3, 3, 256, 256]  # the stand-in keeps the shapes
    assert metrics["values"] == {}  # nothing compared: the references are for the real files


@pytest.mark.real_data
def test_every_reference_value_on_the_real_files(real_data_dir, tmp_path, capsys):
    metrics = run_lesson_main(STEM, tmp_path, "--data-dir", str(real_data_dir))
    assert metrics["reference_values"] == "14/14" and metrics["all_match"]
    values = metrics["values"]
    assert values["features shape"] == [4898, 11] and values["target shape"] == [4898]
    assert (values["predicted good"], values["actually good"], values["both"]) == (2727, 3258, 2018)
    assert values["precision"] == pytest.approx(0.740, abs=5e-4)
    assert values["recall"] == pytest.approx(0.619, abs=5e-4)
    assert values["hours shape"] == [17520, 17] and values["hours stride"] == (17, 1)
    assert values["days shape"] == [730, 24, 17] and values["days stride"] == (408, 17, 1)
    assert values["vocabulary size"] == 7261
    assert values["word one-hot of the line"] == [11, 7261]
    assert values["character one-hot of the line"] == [70, 128]
    assert metrics["image_batch_shape"] == [3, 3, 256, 256]  # cat1..3.png, N x C x H x W
    out = capsys.readouterr().out
    assert "total sulfur dioxide     170.60   141.83   125.25" in out  # falls as quality rises
    assert "precision: 0.74" in out and "recall: 0.619" in out


def _root_with(tmp_path, relative, content: bytes, *others: str):
    """A data root holding `content` at `relative` (and at each of `others`)."""
    root = tmp_path / "data"
    for path in (relative, *others):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)
    return root


WINE_ROW = b"7;0.27;0.36;20.7;0.045;45;170;1.001;3;0.45;8.8;6\n"


@pytest.mark.parametrize(
    "relative, content",
    [
        (WINE, b"a;b;c\n1;2;3\n"),  # too few columns
        (WINE, b"fixed acidity;quality\n7.0;x;y\n"),  # not numbers
        (WINE, b"header\n" + WINE_ROW * 3 + WINE_ROW[:12]),  # truncated mid-row
        (WINE, b"header\n"),  # a header and no rows
        (WINE, b"\xff\xfe;header\n" + WINE_ROW),  # not UTF-8 text
        (BIKES, b"\x1f\x8b\x08\x00garbage"),  # a gzip file where a CSV should be
        (TEXT, b"\xff\xfe\x00P\x00r\x00i\x00d\x00e"),  # UTF-16, not UTF-8
    ],
)
def test_a_malformed_file_is_a_data_error_naming_it(tmp_path, monkeypatch, relative, content):
    monkeypatch.delenv("LESSONS_REQUIRE_REAL_DATA", raising=False)  # the others: stand-ins
    root = _root_with(tmp_path, relative, content)
    with pytest.raises(DataError, match=relative.split("/")[-1]):
        run_lesson_main(STEM, tmp_path, "--data-dir", str(root), "--no-download")


def test_a_file_in_the_image_folder_that_is_not_an_image_is_a_data_error(tmp_path, monkeypatch):
    monkeypatch.delenv("LESSONS_REQUIRE_REAL_DATA", raising=False)
    root = _root_with(tmp_path, CATS[0], b"not a png", *CATS[1:])
    with pytest.raises(DataError, match=r"cat1\.png: expected a PNG image"):
        run_lesson_main(STEM, tmp_path, "--data-dir", str(root), "--no-download")


def test_a_malformed_file_on_the_command_line_is_one_line(tmp_path):
    root = _root_with(tmp_path, WINE, b"a;b\n1;2\n")
    result = run_lesson_cli(STEM, "--out", str(tmp_path / "out"), "--data-dir", str(root))
    assert "winequality-white.csv" in one_line_error(result)
