"""Lesson 11: names as padded, sorted ASCII codes; the bidirectional GRU; data forms and errors."""

from __future__ import annotations

import gzip

import pytest
import torch
from conftest import load_lesson, one_line_error, run_lesson_cli, run_lesson_main

from common import LessonError
from common.data import DataError

STEM = "11_name_classifier"


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


def test_names_become_padded_codes_sorted_longest_first(lesson):
    codes, lengths, order = lesson.make_batch(["Kim", "Ivanov", "Li"])
    assert codes.shape == (3, 6) and codes.dtype == torch.long
    assert lengths.tolist() == [6, 3, 2]
    assert order.tolist() == [1, 0, 2]
    assert codes[0].tolist() == [ord(c) for c in "Ivanov"]
    assert codes[2].tolist() == [ord("L"), ord("i"), 0, 0, 0, 0]  # zero padding


def test_labels_follow_the_sorting(lesson):
    index = {"Korean": 0, "Russian": 1}
    _, _, labels = lesson.collate([("Kim", "Korean"), ("Ivanov", "Russian")], index)
    assert labels.tolist() == [1, 0]  # Ivanov (longest) comes first


def test_the_gru_reads_both_directions(lesson):
    model = lesson.NameClassifier(n_languages=18)
    assert model.gru.bidirectional and model.gru.num_layers == 2
    codes, lengths, _ = lesson.make_batch(["Nakamura", "Li", "Schmidt"])
    assert model(codes, lengths).shape == (3, 18)
    # Padding must not change a name's prediction: packing stops at its last character.
    model.eval()
    alone = model(*lesson.make_batch(["Li"])[:2])
    assert torch.allclose(alone, model(codes, lengths)[2:3], atol=1e-5)


def test_quick_run_on_the_stand_in_learns(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.delenv("LESSONS_REQUIRE_REAL_DATA", raising=False)
    metrics = run_lesson_main(STEM, tmp_path, "--quick", "--data-dir", str(empty), "--no-download")
    assert metrics["source"] == "stand-in"
    assert capsys.readouterr().out.count("NOTICE") == 1
    assert metrics["loss_history"][-1] < metrics["loss_history"][0]
    assert (tmp_path / STEM / "accuracy.png").is_file()


@pytest.mark.parametrize("name", ["", "   ", "Müller"])
def test_bad_names_to_predict_are_refused_before_training(tmp_path, name):
    with pytest.raises(LessonError, match="--predict"):
        run_lesson_main(STEM, tmp_path, "--quick", "--predict", name)


def test_bad_name_on_the_command_line_is_one_line(tmp_path):
    result = run_lesson_cli(STEM, "--quick", "--out", str(tmp_path), "--predict", "Müller")
    assert one_line_error(result).startswith("error: --predict")


def test_malformed_csv_names_the_file(tmp_path):
    root = tmp_path / "data"
    (root / "liuer").mkdir(parents=True)
    with gzip.open(root / "liuer" / "names_train.csv.gz", "wt") as file:
        file.write('"Adsit","Czech","extra"\n')
    with gzip.open(root / "liuer" / "names_test.csv.gz", "wt") as file:
        file.write('"Kim","Korean"\n')
    with pytest.raises(DataError, match=r"names_train\.csv\.gz"):
        run_lesson_main(STEM, tmp_path, "--quick", "--data-dir", str(root), "--no-download")


def test_a_names_file_that_is_not_gzip_names_the_file(tmp_path):
    root = tmp_path / "data"
    (root / "liuer").mkdir(parents=True)
    (root / "liuer" / "names_train.csv.gz").write_text("name,language\nKim,Korean\n")
    with gzip.open(root / "liuer" / "names_test.csv.gz", "wt") as file:
        file.write('"Kim","Korean"\n')
    with pytest.raises(DataError, match=r"names_train\.csv\.gz"):
        run_lesson_main(STEM, tmp_path, "--quick", "--data-dir", str(root), "--no-download")


@pytest.mark.parametrize("flags", [["--names-format", "xml"], ["--lr", "0"]])
def test_bad_flags_are_argparse_errors(lesson, flags, capsys):
    with pytest.raises(SystemExit) as exit_info:
        lesson.main(["--quick", "--device", "cpu", *flags])
    assert exit_info.value.code == 2
    assert flags[0] in capsys.readouterr().err


@pytest.mark.real_data
def test_real_names_briefly_trained_beat_chance(real_data_dir, tmp_path):
    metrics = run_lesson_main(STEM, tmp_path, "--epochs", "2", "--data-dir", str(real_data_dir))
    assert metrics["source"] == "liuer"
    assert metrics["languages"] == 18 and metrics["test_names"] == 6700
    assert metrics["test_accuracy"] >= 0.70  # always guessing Russian scores 0.47
    assert metrics["predictions"]["Nakamura"][0][0] == "Japanese"


@pytest.mark.real_data
def test_the_tutorial_files_work_too(real_data_dir, tmp_path):
    metrics = run_lesson_main(
        STEM, tmp_path, "--quick", "--names-format", "tutorial", "--data-dir", str(real_data_dir)
    )
    assert metrics["source"] == "tutorial" and metrics["languages"] == 18
