"""Lesson 13: optimization in practice. The saddle point's reference values (Hessian and its
eigenvalues) on the function's return value and on the printed lines; every other section is
checked for what it claims to show, on the quick run and on a full run."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from conftest import load_lesson, one_line_error, run_lesson_cli, run_script
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

STEM = "13_optimization"
NAMES = ["SGD", "momentum", "Adagrad", "RMSProp", "Adam"]


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


# --------------------------------------------------------------------------- the saddle point
def test_saddle_reference_values(lesson):
    critical = lesson.saddle()
    assert critical["gradient"] == [0.0, 0.0]
    hessian = torch.tensor(critical["hessian"])
    assert torch.allclose(hessian, torch.tensor([[0.0, -2.0], [-2.0, 0.0]]))
    assert torch.allclose(torch.tensor(critical["eigenvalues"]), torch.tensor([-2.0, 2.0]))
    u = torch.tensor(critical["escape_direction"])  # unit eigenvector of -2, proportional to [1, 1]
    assert torch.allclose(u, torch.tensor([1.0, 1.0]) / 2**0.5, atol=1e-6)
    assert torch.allclose(hessian @ u, -2 * u, atol=1e-6)


def test_stepping_along_the_negative_eigenvector_lowers_the_loss(lesson):
    critical = lesson.saddle()
    # L(0.5 u) = (1 - 0.125)^2 < L(0, 0) = 1; along the other eigenvector it rises: (1 + 0.125)^2
    assert critical["loss_along_escape"] == pytest.approx(0.875**2)
    assert critical["loss_along_other"] == pytest.approx(1.125**2)
    assert lesson.saddle_loss(torch.zeros(2)).item() == 1.0


def test_the_saddle_values_are_printed(quick_run):
    run = quick_run(STEM)
    assert run.line("Hessian: ").startswith("Hessian: [[0.0, -2.0], [-2.0, 0.0]], eigenvalues: "
                                            "[-2.0, 2.0]")  # fmt: skip
    assert run.line("eigenvector of -2: ").startswith("eigenvector of -2: [0.7071, 0.7071]")
    assert run.line("L(0.5 u) = ").startswith("L(0.5 u) = 0.7656 < L(0, 0) = 1 < L(0.5 v) = 1.2656")


# --------------------------------------------------------------------------- the training loop
def test_fit_lowers_the_loss_and_early_stopping_keeps_the_best_weights(lesson):
    torch.manual_seed(0)
    x = torch.linspace(-3, 3, 64).unsqueeze(1)
    data = (x, torch.sin(x))
    model = lesson.mlp(1, 16, 1)
    history = lesson.fit(model, torch.optim.Adam(model.parameters(), lr=1e-2), [data], data,
                         epochs=200)  # fmt: skip
    assert len(history["train"]) == len(history["val"]) == 200 and history["accuracy"] == []
    assert history["train"][-1] < 0.1 * history["train"][0]
    # Early stopping on a validation set it cannot improve on: it stops, with the best weights.
    noise = (x, torch.randn(64, 1, generator=torch.Generator().manual_seed(1)))
    model = lesson.mlp(1, 16, 1)
    history = lesson.fit(model, torch.optim.Adam(model.parameters(), lr=1e-2), [data], noise,
                         epochs=500, patience=10)  # fmt: skip
    assert len(history["val"]) < 500
    with torch.no_grad():
        assert F.mse_loss(model(x), noise[1]).item() == pytest.approx(min(history["val"]))


def test_fit_on_mini_batches_reports_accuracy(lesson):
    torch.manual_seed(0)
    x, y = torch.randn(256, 784), torch.randint(10, (256,))
    model = lesson.mlp(784, 32, 10)
    loader = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
    history = lesson.fit(model, torch.optim.Adam(model.parameters(), lr=1e-3), loader, (x, y),
                         epochs=10, loss_fn=F.cross_entropy)  # fmt: skip
    assert history["train"][-1] < 0.5 * history["train"][0]
    assert history["accuracy"][-1] > 0.8  # it memorizes the 256 samples it is scored on


def test_mlp_shapes_and_dropout(lesson):
    model = lesson.mlp(784, 128, 10, dropout=0.3)
    assert model(torch.zeros(5, 784)).shape == (5, 10)
    linears = [layer for layer in model if isinstance(layer, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 128), (128, 128), (128, 10)]
    assert [m.p for m in model if isinstance(m, nn.Dropout)] == [0.3, 0.3]


# --------------------------------------------------------------------------- capacity, pieces
def test_capacity_quick(quick_run):
    run = quick_run(STEM)
    metrics = run.metrics
    capacity = metrics["capacity"]
    linear, big = capacity["linear (model bias)"], capacity["big MLP, 2x96 (overfits)"]
    assert linear["train"] > 2 * big["train"]  # the linear model cannot bend: model bias
    assert big["val"] > big["train"]
    stopped = capacity["big + early stopping"]
    assert metrics["best_val_loss_early_stopping"] == stopped["val"] == stopped["best_val"]
    history = metrics["loss_history"]
    assert len(history) >= 2 and history[-1] < history[0]
    assert metrics["headline"] == "best_val_loss_early_stopping"
    assert (run.out / "capacity_curves.png").stat().st_size > 1000


def test_full_capacity_run_overfits_and_the_cures_help(tmp_path):
    run = run_script(STEM, tmp_path)  # the full lesson: 1000 full-batch steps per curve model
    capacity = run.metrics["capacity"]
    big = capacity["big MLP, 2x96 (overfits)"]
    assert big["val"] > 2 * big["train"], "the big MLP should overfit 30 points"
    assert big["val"] > 1.2 * big["best_val"], "its validation loss should rise again"
    for cure in ("big + early stopping", "big + weight decay 1.0", "big + dropout 0.3"):
        assert capacity[cure]["val"] < big["val"], cure
    assert capacity["big + early stopping"]["val"] < capacity["linear (model bias)"]["val"] / 3


def test_hard_sigmoid_is_two_relus(lesson):
    x = torch.linspace(-3, 3, 101)
    piece = lesson.hard_sigmoid(x, -0.5, 0.5, 1.5)
    assert torch.allclose(piece, 1.5 * (x + 0.5).clamp(0, 1), atol=1e-6)
    assert piece[0] == 0 and piece[-1] == pytest.approx(1.5)


def test_sum_of_pieces(quick_run):
    metrics = quick_run(STEM).metrics
    assert metrics["hard_sigmoid_gap"] < 1e-5  # two ReLUs make exactly one hard sigmoid
    errors = metrics["pieces_mse"]
    for act in ("Sigmoid", "ReLU"):
        assert errors[f"16 {act}"] < errors[f"1 {act}"] / 3, act


# --------------------------------------------------------------------------- batches, optimizers
def test_batch_sizes(quick_run):
    run = quick_run(STEM)
    results = run.metrics["batch_size"]
    assert sorted(results, key=int) == ["16", "128", "1024"]
    assert all(r["epoch_s"] > 0 and 0 <= r["val_accuracy"] <= 1 for r in results.values())
    # Same epochs and learning rate: 50 updates per epoch beat a single one.
    assert results["16"]["val_accuracy"] > results["1024"]["val_accuracy"]
    assert run.line("SGD, batch   16: ").startswith("SGD, batch   16:   50 updates per epoch")
    # The whole split became one standardized tensor, kept for the next section too.
    images, labels = run.globals["fashion_train"]
    assert images.shape == (800, 784) and labels.shape == (800,)
    assert abs(images.mean().item()) < 1e-4 and images.std().item() == pytest.approx(1, abs=1e-4)


def test_optimizers_on_one_surface_and_one_network(quick_run):
    run = quick_run(STEM)
    surface, network = run.metrics["optimizer_surface_loss"], run.metrics["optimizer_network"]
    assert list(surface) == NAMES and list(network) == NAMES
    start = 0.02 * 4.5**2 + 2 * 1.5**2
    assert all(loss < start / 10 for loss in surface.values())
    # the adaptive methods handle the 100x difference in curvature better than plain SGD
    assert surface["RMSProp"] < surface["SGD"] and surface["Adagrad"] < surface["SGD"]
    assert all(0 < r["train_loss"] < 2.3 for r in network.values())  # below chance, ln(10)
    assert network["Adam"]["val_accuracy"] > max(0.4, network["SGD"]["val_accuracy"])
    assert (run.out / "optimizer_trajectories.png").stat().st_size > 1000


def test_the_valley_is_100_times_steeper_along_w2(lesson):
    w = torch.tensor([1.0, 1.0], requires_grad=True)
    lesson.valley(w).backward()
    assert w.grad.tolist() == pytest.approx([0.04, 4.0])
    assert set(lesson.OPTIMIZERS) == set(NAMES)


# --------------------------------------------------------------------------- schedules, clipping
def test_lr_schedules(lesson, quick_run):
    lrs = lesson.schedules()
    step, exponential, warm = lrs.values()
    assert [step[i] for i in (0, 19, 20, 40)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    assert exponential[10] == pytest.approx(0.1 * 0.95**10)
    assert warm[0] == pytest.approx(0.01) and warm[10] == pytest.approx(0.1)
    assert all(a < b for a, b in itertools.pairwise(warm[:11]))  # rising during warm-up
    assert all(a > b for a, b in itertools.pairwise(warm[10:]))  # then decaying
    saved = quick_run(STEM).metrics["lr_schedules"]
    assert all(saved[name] == pytest.approx(values) for name, values in lrs.items())
    assert (quick_run(STEM).out / "lr_schedules.png").stat().st_size > 1000


def test_gradient_clipping(lesson, quick_run):
    before, after = lesson.clipping()
    assert before > 10
    assert after == pytest.approx(1.0, rel=1e-4)
    assert quick_run(STEM).line("total gradient norm before clipping ")


# --------------------------------------------------------------------------- flags and errors
def test_a_bad_flag_is_a_usage_error(tmp_path):
    result = run_lesson_cli(STEM, "--epochs", "0", "--out", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "argument --epochs: must be at least 1, got 0" in result.stderr


def test_corrupt_data_file_is_a_one_line_error(tmp_path):
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    bad = raw / "train-images-idx3-ubyte.gz"
    bad.write_bytes(b"not a gzip file")
    result = run_lesson_cli(STEM, "--quick", "--data-dir", str(tmp_path / "data"),
                            "--out", str(tmp_path / "out"))  # fmt: skip
    assert str(bad) in one_line_error(result)


# --------------------------------------------------------------------------- real data
@pytest.mark.real_data
def test_real_fashion_mnist(real_data_dir, tmp_path):
    run = run_script(STEM, tmp_path, "--quick", "--data-dir", str(real_data_dir))
    assert "NOTICE" not in run.printed and "data" not in run.metrics  # the real images
    network = run.metrics["optimizer_network"]
    assert network["Adam"]["val_accuracy"] > 0.6, network  # chance is 0.1
