"""Lesson 06: softmax/cross-entropy references, the MLPs, the training loop, real-data training."""

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
from torch.utils.data import DataLoader, TensorDataset

STEM = "06_mlp"
REFERENCE = {
    "cross-entropy by hand (NumPy)": 0.9729,
    "nn.CrossEntropyLoss": 0.9729,
    "batch loss, good predictions": 0.4966,
    "batch loss, poor predictions": 1.2389,
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """`--quick` on the offline stand-in (an empty data root), output captured."""
    tmp_path = tmp_path_factory.mktemp("lesson06")
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
    assert str(expected) in line and line.endswith(" ok"), line


def test_all_reference_values_match(quick_run):
    metrics, printed, _ = quick_run
    assert metrics["all_match"] is True and metrics["reference_values"] == "4/4"
    assert "MISMATCH" not in printed


def test_neural_network_shapes_and_parameters():
    lesson = load_lesson(STEM)
    model = lesson.NeuralNetwork()
    sizes = {name: list(p.shape) for name, p in model.named_parameters()}
    assert sizes["linear_relu_stack.0.weight"] == [512, 784]
    assert sizes["linear_relu_stack.2.weight"] == [512, 512]
    assert sizes["linear_relu_stack.4.weight"] == [10, 512]
    assert sum(p.numel() for p in model.parameters()) == 669_706
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_deeper_mlp_layer_sizes():
    model = load_lesson(STEM).DeeperMLP()
    linears = [layer for layer in model.modules() if isinstance(layer, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [
        (784, 512), (512, 256), (256, 128), (128, 64), (64, 10),
    ]  # fmt: skip
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_model_is_printed_with_parameter_sizes(quick_run):
    _, printed, _ = quick_run
    assert "NeuralNetwork(" in printed
    assert "linear_relu_stack.0.weight: size [512, 784]" in printed
    assert "669,706 parameters" in printed
    assert "predicted class" in printed


def test_quick_run_trains_and_records_each_epoch(quick_run):
    metrics, printed, out = quick_run
    history = metrics["loss_history"]
    assert len(history) == metrics["epochs"] >= 2
    assert history[-1] < history[0]
    per_epoch = metrics["test_accuracy_per_epoch"]
    assert len(per_epoch) == len(metrics["epoch_seconds"]) == len(history)
    assert metrics["test_accuracy"] == per_epoch[-1]
    assert all(seconds > 0 for seconds in metrics["epoch_seconds"])
    # The stand-in is learnable: a working loop gets far above chance (0.1) on it.
    assert metrics["test_accuracy"] > 0.5
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["headline"] == "test_accuracy" and saved["data"] == "stand-in"
    assert saved["test_accuracy"] == metrics["test_accuracy"]
    assert saved["test_accuracy_per_epoch"] == per_epoch
    assert (out / "training.png").stat().st_size > 0
    assert "epoch 1: train loss" in printed and "test accuracy" in printed


def test_baseline_sgd_is_shown_next_to_adam(quick_run):
    metrics, printed, _ = quick_run
    assert set(metrics["baseline_accuracy"]) == {"SGD lr 1e-3 (the tutorial)", "Adam lr 1e-3"}
    assert "SGD lr 1e-3 (the tutorial)" in printed


def test_train_loop_lowers_loss_and_test_loop_scores():
    lesson = load_lesson(STEM)
    torch.manual_seed(0)
    labels = torch.arange(64) % 10
    patterns = torch.randn(10, 1, 28, 28)  # one pattern per class, plus noise
    images = patterns[labels] + 0.5 * torch.randn(64, 1, 28, 28)
    loader = DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=True)
    model, loss_fn, cpu = lesson.NeuralNetwork(), nn.CrossEntropyLoss(), torch.device("cpu")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = lesson.gradient_scaler(cpu)
    before, _ = lesson.test_loop(loader, model, loss_fn, cpu)
    with contextlib.redirect_stdout(io.StringIO()):
        for _ in range(10):
            lesson.train_loop(loader, model, loss_fn, optimizer, cpu, scaler)
    after, accuracy = lesson.test_loop(loader, model, loss_fn, cpu)
    assert after < before / 2
    assert accuracy == 1.0
    assert not model.training  # test_loop switched to evaluation mode


def test_normalize_uses_training_statistics():
    lesson = load_lesson(STEM)
    train = TensorDataset(torch.rand(100, 1, 4, 4) * 0.5, torch.zeros(100))
    test = TensorDataset(torch.full((10, 1, 4, 4), 0.25), torch.zeros(10))
    with contextlib.redirect_stdout(io.StringIO()):
        mean, std = lesson.normalize(train, test)
    assert abs(train.tensors[0].mean().item()) < 1e-5
    assert abs(train.tensors[0].std().item() - 1) < 1e-4
    assert torch.allclose(test.tensors[0], torch.full((10, 1, 4, 4), (0.25 - mean) / std))


def test_bad_variant_is_an_argparse_error(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        run_lesson_main(STEM, tmp_path, "--variant", "wide")
    assert exit_info.value.code == 2


def test_corrupt_data_file_is_a_one_line_error(tmp_path):
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"not a gzip file")
    env = {**os.environ, "LESSONS_OFFLINE": "1", "PYTHONPATH": str(LESSONS_DIR)}
    result = subprocess.run(
        [sys.executable, str(LESSONS_DIR / f"{STEM}.py"), "--quick", "--device", "cpu",
         "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "train-images-idx3-ubyte.gz" in lines[0] and "corrupt" in lines[0]


@pytest.mark.real_data
def test_default_recipe_learns_real_fashion_mnist(real_data_dir, tmp_path):
    # 300 batches of 128 with the default recipe (Adam), scored on the full real test split.
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        metrics = run_lesson_main(
            STEM, tmp_path, "--data-dir", str(real_data_dir), "--epochs", "1",
            "--train-images", "38400",
        )  # fmt: skip
    assert "NOTICE" not in buffer.getvalue()
    saved = json.loads((tmp_path / STEM / "metrics.json").read_text())
    assert "data" not in saved and "stand_ins" not in saved  # real data, not the stand-in
    assert metrics["dataset"] == "FashionMNIST"
    assert metrics["test_accuracy"] >= 0.80, metrics["test_accuracy"]
    baseline = metrics["baseline_accuracy"]
    # The lesson's point: the tutorial's SGD lr 1e-3 lags far behind Adam after the same batches.
    assert baseline["Adam lr 1e-3"] > baseline["SGD lr 1e-3 (the tutorial)"] + 0.15
