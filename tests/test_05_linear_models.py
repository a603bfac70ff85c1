"""Lesson 05: every reference value of CURRICULUM.md §05, the plots, the diabetes classifier
(stand-in and real table) and the one-line errors for a bad diabetes file."""

from __future__ import annotations

import gzip
import io
import itertools
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import load_lesson, one_line_error, run_lesson_cli, run_lesson_main

from common.data import DataError, DataUnavailable

STEM = "05_linear_models"
DIABETES = Path("liuer") / "diabetes.csv.gz"

# label -> (reference value, tolerance); 0 means exact
REFERENCE = {
    "MSE at w = 0, 1, 2, 3, 4": ([18.67, 4.67, 0.0, 4.67, 18.67], 0),
    "batch gradient descent, 100 epochs: w": (2.0, 0),
    "stochastic gradient descent, 100 epochs: w": (2.0, 0),
    "initial loss at w = 1, b = 0": (1763.88, 0),
    "lr 1e-2: loss at epoch 10": (9.09e34, 0.01e34),
    "lr 1e-2: loss at epoch 11": (math.inf, 0),
    "lr 1e-4: loss at epoch 100": (29.02, 0),
    "lr 1e-4: params after 100 epochs": ([0.2327, -0.0438], 0),
    "normalized input, lr 1e-2, 5000 epochs: loss": (2.927645, 2e-6),
    "autograd, 5000 epochs: loss": (2.927645, 2e-6),
    "optim.SGD, 5000 epochs: loss": (2.927645, 2e-6),
    "prediction at x = 4": (8.0, 0.05),
    "P crosses 0.5 between x = 2 and x = 3": (True, 0),
    "BCE per sample": ([1.609, 0.223, 0.357, 1.204], 0),
    "BCE by hand equals F.binary_cross_entropy": (True, 0),
    "mean BCE": (0.8483, 0),
    "max |Linear(Linear(x)) - merged Linear(x)| < 1e-5": (True, 0),
}


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One --quick run on an empty data root (offline: the diabetes stand-in)."""
    tmp_path = tmp_path_factory.mktemp("lesson05")
    (tmp_path / "empty").mkdir()
    capture = pytest.MonkeyPatch()
    buffer = io.StringIO()
    capture.setattr(sys, "stdout", buffer)
    try:
        from common import data

        data._announced.clear()
        metrics = run_lesson_main(STEM, tmp_path, "--quick", "--data-dir", str(tmp_path / "empty"))
    finally:
        capture.undo()
    return metrics, buffer.getvalue(), tmp_path / STEM


@pytest.mark.parametrize(("label", "reference"), REFERENCE.items())
def test_reference_value(quick_run, label, reference):
    metrics, printed, _ = quick_run
    expected, tolerance = reference
    value = metrics["values"][label]
    if tolerance:
        assert np.allclose(value, expected, rtol=0, atol=tolerance), (label, value)
    else:
        assert value == expected
    line = next(line for line in printed.splitlines() if line.startswith(f"  {label}: "))
    assert line.endswith(" ok"), line


def test_every_check_is_asserted_here(quick_run):
    metrics, printed, _ = quick_run
    assert set(metrics["values"]) == set(REFERENCE)
    assert metrics["all_match"] is True
    assert "MISMATCH" not in printed
    assert 7.95 < metrics["linear_prediction_at_4"] < 8.05
    assert 2.0 < metrics["logistic_crossing"] < 3.0


def test_divergence_is_detected_and_explained(lesson, quick_run):
    _, printed, _ = quick_run
    assert "epoch 11: loss inf -> diverged, stopping" in printed
    assert "overshoot" in printed
    _, losses = lesson.training_loop(100, 1e-2, torch.tensor([1.0, 0.0]), lesson.T_U, lesson.T_C)
    assert len(losses) == 11 and losses[-1] == math.inf  # stopped at the first infinite loss
    assert all(later > earlier for earlier, later in itertools.pairwise(losses))


def test_plots_are_saved_as_png(quick_run):
    _, _, out = quick_run
    for name in ("mse_vs_w.png", "thermometer_fit.png", "logistic_curve.png"):
        path = out / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert path.stat().st_size > 5_000, name  # a real figure, not an empty canvas


def test_quick_diabetes_run_uses_the_announced_stand_in(quick_run):
    metrics, printed, out = quick_run
    assert printed.count("NOTICE: diabetes") == 1
    assert metrics["table_shape"] == [759, 9]
    assert (metrics["train_size"], metrics["held_out_size"]) == (608, 151)
    assert len(metrics["loss_history"]) == 10
    assert metrics["loss_history"][-1] < metrics["loss_history"][0]
    assert "held-out accuracy" in printed and "on 151 rows (trained on 608" in printed
    assert '"data": "stand-in"' in (out / "metrics.json").read_text()


def test_the_stand_in_is_deterministic_and_learnable(lesson, tmp_path, capsys):
    table = lesson.stand_in_diabetes()
    assert table.shape == (759, 9) and table.dtype == np.float32
    assert np.array_equal(table, lesson.stand_in_diabetes())
    assert set(np.unique(table[:, -1])) == {0.0, 1.0}
    assert np.abs(table[:, :-1]).max() <= 1.0  # features scaled to [-1, 1] like the real table
    with lesson.single_thread():
        result = lesson.diabetes_classifier(diabetes_args(tmp_path, offline=True))
    assert result["held_out_accuracy"] >= 0.8 > result["majority_baseline"]


def test_stand_in_refused_when_real_data_is_required(lesson, tmp_path, monkeypatch):
    monkeypatch.setenv("LESSONS_REQUIRE_REAL_DATA", "1")
    with pytest.raises(DataUnavailable, match="diabetes"):
        lesson.load_diabetes(diabetes_args(tmp_path, offline=True))


# --------------------------------------------------------------------------- bad data files
def diabetes_args(data_dir: Path, epochs: int = 40, offline: bool = False) -> SimpleNamespace:
    return SimpleNamespace(data_dir=data_dir, offline=offline, seed=0, batch_size=32,
                           quick=False, epochs=epochs, device=torch.device("cpu"))  # fmt: skip


def good_csv(lesson) -> str:
    buffer = io.StringIO()
    np.savetxt(buffer, lesson.stand_in_diabetes(), delimiter=",", fmt="%g")
    return buffer.getvalue()


def write_table(root: Path, payload: bytes) -> Path:
    path = root / DIABETES
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def test_a_good_gzipped_table_reads_back(lesson, tmp_path):
    path = write_table(tmp_path, gzip.compress(good_csv(lesson).encode()))
    table = lesson.read_diabetes(path)
    assert table.shape == (759, 9) and table.dtype == np.float32
    assert np.allclose(table, lesson.stand_in_diabetes(), atol=1e-5)


BAD_FILES = {
    "truncated gzip": lambda csv: gzip.compress(csv.encode())[:3000],
    "plain CSV named .gz": lambda csv: csv.encode(),
    "five columns": lambda csv: gzip.compress(
        "\n".join(",".join(row.split(",")[:5]) for row in csv.splitlines()).encode()
    ),
    "a header row": lambda csv: gzip.compress(("a,b,c,d,e,f,g,h,label\n" + csv).encode()),
    "labels other than 0/1": lambda csv: gzip.compress(csv.replace(",1\n", ",2\n").encode()),
    "empty": lambda csv: gzip.compress(b""),
}


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_bad_table_is_a_one_line_data_error_naming_the_file(lesson, tmp_path, kind):
    path = write_table(tmp_path, BAD_FILES[kind](good_csv(lesson)))
    with pytest.raises(DataError) as caught:
        lesson.read_diabetes(path)
    message = str(caught.value)
    assert str(path) in message
    assert "expected a gzip-compressed CSV with 9 numbers per row" in message
    assert "\n" not in message


def test_a_bad_table_stops_main_rather_than_falling_back(lesson, tmp_path):
    write_table(tmp_path / "data", gzip.compress(good_csv(lesson).encode())[:3000])
    with pytest.raises(DataError, match=r"diabetes\.csv\.gz: expected"):
        run_lesson_main(STEM, tmp_path, "--quick", "--data-dir", str(tmp_path / "data"))


def test_the_command_line_prints_one_error_line(lesson, tmp_path):
    path = write_table(tmp_path / "data", good_csv(lesson).encode())  # not gzipped
    result = run_lesson_cli(
        "05_linear_models",
        "--quick",
        "--data-dir",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "out"),
    )
    assert one_line_error(result).startswith(f"error: {path}: expected a gzip-compressed CSV")


# --------------------------------------------------------------------------- real data
@pytest.mark.real_data
def test_the_real_table_has_the_expected_shape(lesson, real_data_dir):
    table = lesson.read_diabetes(real_data_dir / DIABETES)
    assert table.shape == (759, 9)
    assert set(np.unique(table[:, -1])) == {0.0, 1.0}
    assert 0.6 < table[:, -1].mean() < 0.7  # about two thirds labelled 1


@pytest.mark.real_data
def test_the_classifier_beats_0_72_held_out_on_the_real_table(lesson, real_data_dir):
    with lesson.single_thread():  # as main() does: tiny model, one thread is fastest
        result = lesson.diabetes_classifier(diabetes_args(real_data_dir))
    assert result["table_shape"] == [759, 9]
    assert result["held_out_size"] == 151
    assert result["held_out_accuracy"] >= 0.72 > result["majority_baseline"]
    assert result["loss_history"][-1] < result["loss_history"][0]
