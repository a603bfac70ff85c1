"""Lesson 07: convolution/pooling references, layer shapes, the CNN, real-data training."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import LESSONS_DIR, REPO_ROOT, load_lesson, run_lesson_main
from torch import nn

STEM = "07_cnn"
REFERENCE = {
    "5x5 * kernel 1..9, no padding": [[211, 295, 262], [259, 282, 214], [251, 253, 169]],
    "padding 1, first row": [91, 168, 224, 215, 127],
    "padding 1, last row": [96, 112, 110, 68, 31],
    "stride 2": [[211, 262], [251, 169]],
    "second example, stride 1": [[10, 12, 12], [18, 16, 16], [13, 9, 3]],
    "second example, stride 2": [[10, 12], [13, 3]],
    "4x4, kernel 2": [[4, 8], [9, 8]],
    "5x5, kernel 3, ceil_mode=True": [[2, 3], [5, 1]],
    "5x5, kernel 3, ceil_mode=False": [[2]],
    "Conv2d(5, 10, 3) on 1x5x100x100": [1, 10, 98, 98],
    "its weight": [10, 5, 3, 3],
    "Sequential conv net on ones(64, 3, 28, 28)": [64, 10],
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """`--quick` on the offline stand-in (an empty data root), output captured."""
    tmp_path = tmp_path_factory.mktemp("lesson07")
    empty = tmp_path / "empty-data-root"
    empty.mkdir()
    buffer = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(buffer):
        patch.setenv("LESSONS_OFFLINE", "1")
        patch.delenv("LESSONS_REQUIRE_REAL_DATA", raising=False)
        metrics = run_lesson_main(STEM, tmp_path, "--quick", "--data-dir", str(empty))
    return metrics, buffer.getvalue(), tmp_path / STEM


@pytest.mark.parametrize(("label", "expected"), REFERENCE.items())
def test_reference_value(quick_run, label, expected):
    metrics, printed, _ = quick_run
    assert metrics["values"][label] == expected
    line = next(line for line in printed.splitlines() if line.startswith(f"  {label}: "))
    assert line.startswith(f"  {label}: {expected}") and line.endswith(" ok"), line


def test_all_reference_values_match(quick_run):
    metrics, printed, _ = quick_run
    assert metrics["all_match"] is True and metrics["reference_values"] == "12/12"
    assert "MISMATCH" not in printed


@pytest.mark.parametrize(
    ("n", "kernel", "padding", "stride", "dilation"),
    [(28, 3, 1, 1, 1), (28, 5, 0, 1, 1), (7, 3, 0, 2, 1), (32, 3, 2, 3, 2), (10, 4, 1, 2, 3)],
)
def test_output_size_formula_matches_conv2d(n, kernel, padding, stride, dilation):
    lesson = load_lesson(STEM)
    layer = nn.Conv2d(1, 1, kernel, padding=padding, stride=stride, dilation=dilation)
    expected = layer(torch.zeros(1, 1, n, n)).shape[-1]
    assert lesson.conv_output_size(n, kernel, padding, stride, dilation) == expected


def test_cnn_shapes():
    model = load_lesson(STEM).CNN()
    images = torch.zeros(2, 1, 28, 28)
    assert model.features(images).shape == (2, 64, 7, 7)
    assert model(images).shape == (2, 10)
    convs = [layer for layer in model.modules() if isinstance(layer, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (32, (3, 3), (1, 1)), (64, (3, 3), (1, 1)),
    ]  # fmt: skip
    linears = [layer for layer in model.modules() if isinstance(layer, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(3136, 512), (512, 10)]


def test_activations_are_shown_as_layers(quick_run):
    _, printed, _ = quick_run
    assert "nn.ReLU()([-2.0, 0.0, 2.0]) = [0.0, 0.0, 2.0]" in printed
    assert "nn.Sigmoid()([-2.0, 0.0, 2.0]) = [0.1192, 0.5, 0.8808]" in printed


def test_quick_run_trains_and_records_each_epoch(quick_run):
    metrics, printed, out = quick_run
    history = metrics["loss_history"]
    assert len(history) == metrics["epochs"] >= 2
    assert history[-1] < history[0]
    per_epoch = metrics["test_accuracy_per_epoch"]
    assert len(per_epoch) == len(metrics["epoch_seconds"]) == len(history)
    assert metrics["test_accuracy"] == per_epoch[-1]
    assert all(seconds > 0 for seconds in metrics["epoch_seconds"])
    assert metrics["test_accuracy"] > 0.5  # the stand-in is learnable; chance is 0.1
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["headline"] == "test_accuracy" and saved["data"] == "stand-in"
    assert saved["dataset"] == "FashionMNIST"
    assert (out / "training.png").stat().st_size > 0
    assert "epoch 1: train loss" in printed


def test_bad_dataset_is_an_argparse_error(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        run_lesson_main(STEM, tmp_path, "--dataset", "cifar")
    assert exit_info.value.code == 2


def test_corrupt_data_file_is_a_one_line_error(tmp_path):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b truncated")
    env = {**os.environ, "LESSONS_OFFLINE": "1", "PYTHONPATH": str(LESSONS_DIR)}
    result = subprocess.run(
        [sys.executable, str(LESSONS_DIR / f"{STEM}.py"), "--quick", "--device", "cpu",
         "--dataset", "mnist", "--data-dir", str(tmp_path / "data"),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "train-labels-idx1-ubyte.gz" in lines[0] and "corrupt" in lines[0]


@pytest.mark.real_data
@pytest.mark.parametrize(("dataset", "name", "at_least"), [
    ("fashion", "FashionMNIST", 0.78), ("mnist", "MNIST", 0.95),
])  # fmt: skip
def test_default_cnn_learns_real_data(real_data_dir, tmp_path, dataset, name, at_least):
    # 200 batches of 128 with the default recipe, scored on the full real test split.
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        metrics = run_lesson_main(
            STEM, tmp_path, "--data-dir", str(real_data_dir), "--dataset", dataset,
            "--epochs", "1", "--train-images", "25600",
        )  # fmt: skip
    assert "NOTICE" not in buffer.getvalue()
    saved = json.loads((tmp_path / STEM / "metrics.json").read_text())
    assert "data" not in saved and "stand_ins" not in saved  # real data, not the stand-in
    assert metrics["dataset"] == name
    assert metrics["test_accuracy"] >= at_least, metrics["test_accuracy"]
