"""Lesson 13: optimization in practice. The saddle point's reference values of CURRICULUM.md §13
are printed and reproduced; every other section is checked for what it claims to show."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import LESSONS_DIR, REPO_ROOT, run_lesson_main

STEM = "13_optimization"


def run(tmp_path, *flags):
    """Run the lesson in-process; return (metrics, printed text)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        metrics = run_lesson_main(STEM, tmp_path, *flags)
    return metrics, buffer.getvalue()


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("lesson13")
    metrics, printed = run(tmp_path, "--quick")
    return metrics, printed, tmp_path / STEM


# %% Critical points: the bold reference values
def test_saddle_reference_values(quick):
    metrics, printed, _ = quick
    assert metrics["gradient"] == [0.0, 0.0]
    assert torch.allclose(
        torch.tensor(metrics["hessian"]), torch.tensor([[0.0, -2.0], [-2.0, 0.0]])
    )
    assert torch.allclose(torch.tensor(metrics["eigenvalues"]), torch.tensor([-2.0, 2.0]))
    u = torch.tensor(metrics["escape_direction"])  # unit eigenvector of -2, proportional to [1, 1]
    assert torch.allclose(u, torch.tensor([1.0, 1.0]) / 2**0.5, atol=1e-6)
    assert "Hessian: [[0.0, -2.0], [-2.0, 0.0]]" in printed
    assert "eigenvalues: [-2.0, 2.0]" in printed
    assert "eigenvector of -2: [0.7071, 0.7071]" in printed


def test_stepping_along_the_negative_eigenvector_lowers_the_loss(quick):
    metrics, _, _ = quick
    # L(0.5 u) = (1 - 0.125)^2; along the other eigenvector the loss rises: (1 + 0.125)^2
    assert metrics["loss_along_escape"] == pytest.approx(0.875**2)
    assert metrics["loss_along_other"] == pytest.approx(1.125**2)


# %% Capacity, early stopping, weight decay, dropout
def test_capacity_quick(quick):
    metrics, _, out = quick
    capacity = metrics["capacity"]
    linear, big = capacity["linear (model bias)"], capacity["big MLP, 2x96 (overfits)"]
    assert linear["train"] > 2 * big["train"]  # the linear model cannot bend: model bias
    assert big["val"] > big["train"]
    stopped = capacity["big + early stopping"]
    assert metrics["best_val_loss_early_stopping"] == stopped["val"] == stopped["best_val"]
    history = metrics["loss_history"]
    assert len(history) >= 2 and history[-1] < history[0]
    assert json.loads((out / "metrics.json").read_text())["headline"] == (
        "best_val_loss_early_stopping"
    )


def test_full_capacity_run_overfits_and_the_cures_help(tmp_path):
    metrics, printed = run(tmp_path, "--section", "capacity")
    capacity = metrics["capacity"]
    big = capacity["big MLP, 2x96 (overfits)"]
    assert big["val"] > 2 * big["train"], "the big MLP should overfit 30 points"
    assert big["val"] > 1.2 * big["best_val"], "its validation loss should rise again"
    for cure in ("big + early stopping", "big + weight decay 1.0", "big + dropout 0.3"):
        assert capacity[cure]["val"] < big["val"], cure
    assert capacity["big + early stopping"]["val"] < capacity["linear (model bias)"]["val"] / 3
    assert "hessian" not in metrics and "# 3." not in printed  # only the chosen section ran


# %% Sums of sigmoids / ReLUs
def test_sum_of_pieces(quick):
    metrics, _, _ = quick
    assert metrics["hard_sigmoid_gap"] < 1e-5  # two ReLUs make exactly one hard sigmoid
    errors = metrics["pieces_mse"]
    for act in ("Sigmoid", "ReLU"):
        assert errors[f"16 {act}"] < errors[f"1 {act}"] / 3, act


# %% Batch size and optimizers
def test_batch_sizes(quick):
    metrics, printed, _ = quick
    results = metrics["batch_size"]
    assert sorted(results) == [16, 128, 1024]
    assert all(r["epoch_s"] > 0 and 0 <= r["val_accuracy"] <= 1 for r in results.values())
    # Same epochs and learning rate: 50 updates per epoch beat a single one.
    assert results[16]["val_accuracy"] > results[1024]["val_accuracy"]
    assert "s/epoch" in printed


def test_optimizers_on_one_surface_and_one_network(quick):
    metrics, _, out = quick
    names = ["SGD", "momentum", "Adagrad", "RMSProp", "Adam"]
    surface, network = metrics["optimizer_surface_loss"], metrics["optimizer_network"]
    assert list(surface) == names and list(network) == names
    start = 0.02 * 4.5**2 + 2 * 1.5**2
    assert all(loss < start / 10 for loss in surface.values())
    # the adaptive methods handle the 100x difference in curvature better than plain SGD
    assert surface["RMSProp"] < surface["SGD"] and surface["Adagrad"] < surface["SGD"]
    assert all(0 < r["train_loss"] < 2.3 for r in network.values())  # below chance, ln(10)
    assert network["Adam"]["val_accuracy"] > 0.5
    assert (out / "optimizer_trajectories.png").stat().st_size > 0


# %% Schedules and clipping
def test_lr_schedules(quick):
    metrics, _, out = quick
    lrs = metrics["lr_schedules"]
    step, exponential, warm = lrs.values()
    assert [step[i] for i in (0, 19, 20, 40)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    assert exponential[10] == pytest.approx(0.1 * 0.95**10)
    assert warm[0] == pytest.approx(0.01) and warm[10] == pytest.approx(0.1)
    assert all(a < b for a, b in itertools.pairwise(warm[:11]))  # rising during warm-up
    assert all(a > b for a, b in itertools.pairwise(warm[10:]))  # then decaying
    assert (out / "lr_schedules.png").stat().st_size > 0


def test_gradient_clipping(quick):
    metrics, printed, _ = quick
    assert metrics["grad_norm_before"] > 10
    assert metrics["grad_norm_after"] == pytest.approx(1.0, rel=1e-4)
    assert "total gradient norm before" in printed


def test_plots_written(quick):
    _, _, out = quick
    for name in ("capacity_curves", "sum_of_pieces", "optimizer_trajectories", "lr_schedules"):
        assert (out / f"{name}.png").stat().st_size > 1000, name


# %% Flags and errors
def test_single_section_headline(tmp_path):
    metrics, _ = run(tmp_path, "--section", "saddle")
    assert set(metrics) >= {"hessian", "eigenvalues"} and "capacity" not in metrics
    saved = json.loads((tmp_path / STEM / "metrics.json").read_text())
    assert saved["headline"] == "data" and saved["data"] == "synthetic curve"


def test_unknown_section_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_lesson_main(STEM, tmp_path, "--section", "nope")
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_corrupt_data_file_is_a_one_line_error(tmp_path):
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    bad = raw / "train-images-idx3-ubyte.gz"
    bad.write_bytes(b"not a gzip file")
    env = dict(os.environ, LESSONS_OFFLINE="1")
    command = [sys.executable, str(LESSONS_DIR / f"{STEM}.py"), "--quick", "--section", "batch"]
    command += ["--device", "cpu", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(bad) in lines[0]


@pytest.mark.real_data
def test_real_fashion_mnist(real_data_dir, tmp_path):
    metrics, printed = run(tmp_path, "--quick", "--section", "optimizers")
    assert metrics["data"] == "synthetic curve + FashionMNIST"
    assert "NOTICE" not in printed
    assert metrics["optimizer_network"]["Adam"]["val_accuracy"] > 0.6
