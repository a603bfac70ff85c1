"""Lesson 02: the reference values on the real files, the stand-ins, and malformed files."""

from __future__ import annotations

import json

import pytest
from conftest import load_lesson, one_line_error, run_lesson_cli, run_lesson_main

from common.data import DataError

STEM = "02_data_as_tensors"
WINE = "dlwpt/p1ch4/tabular-wine/winequality-white.csv"
BIKES = "dlwpt/p1ch4/bike-sharing-dataset/hour-fixed.csv"


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
    assert out.count("NOTICE") == 6  # wine, bikes, text, three images
    saved = json.loads((tmp_path / STEM / "metrics.json").read_text())
    assert saved["data"] == "stand-in" and len(saved["stand_ins"]) == 6
    assert metrics["values"] == {}  # nothing compared: the references are for the real files


@pytest.mark.real_data
def test_every_reference_value_on_the_real_files(real_data_dir, tmp_path):
    metrics = run_lesson_main(STEM, tmp_path, "--data-dir", str(real_data_dir))
    assert metrics["reference_values"] == "14/14" and metrics["all_match"]
    values = metrics["values"]
    assert values["features shape"] == [4898, 11] and values["target shape"] == [4898]
    assert (values["predicted good"], values["actually good"], values["both"]) == (2727, 3258, 2018)
    assert values["precision"] == pytest.approx(0.740, abs=5e-4)
    assert values["recall"] == pytest.approx(0.619, abs=5e-4)
    assert values["days shape"] == [730, 24, 17] and values["days stride"] == (408, 17, 1)
    assert values["vocabulary size"] == 7261
    assert values["word one-hot of the line"] == [11, 7261]


def _root_with(tmp_path, relative, content: bytes):
    root = tmp_path / "data"
    (root / relative).parent.mkdir(parents=True)
    (root / relative).write_bytes(content)
    return root


@pytest.mark.parametrize(
    "relative, content",
    [
        (WINE, b"a;b;c\n1;2;3\n"),  # too few columns
        (WINE, b"fixed acidity;quality\n7.0;x;y\n"),  # not numbers
        (BIKES, b"\x1f\x8b\x08\x00garbage"),  # a gzip file where a CSV should be
    ],
)
def test_a_malformed_file_is_a_data_error_naming_it(tmp_path, monkeypatch, relative, content):
    monkeypatch.delenv("LESSONS_REQUIRE_REAL_DATA", raising=False)  # the others: stand-ins
    root = _root_with(tmp_path, relative, content)
    with pytest.raises(DataError, match=relative.split("/")[-1]):
        run_lesson_main(STEM, tmp_path, "--data-dir", str(root), "--no-download")


def test_a_malformed_file_on_the_command_line_is_one_line(tmp_path):
    root = _root_with(tmp_path, WINE, b"a;b\n1;2\n")
    result = run_lesson_cli(STEM, "--out", str(tmp_path / "out"), "--data-dir", str(root))
    assert "winequality-white.csv" in one_line_error(result)
