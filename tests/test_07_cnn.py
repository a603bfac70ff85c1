"""Lesson 07: convolution/pooling reference values, layer shapes, the CNN, real-data training."""

from __future__ import annotations

import pytest
import torch
from conftest import load_lesson, one_line_error, run_lesson_cli, run_script
from torch import nn

STEM = "07_cnn"
CONVOLUTIONS = {
    "no padding": [[211, 295, 262], [259, 282, 214], [251, 253, 169]],
    "padding 1, first row": [91, 168, 224, 215, 127],
    "padding 1, last row": [96, 112, 110, 68, 31],
    "stride 2": [[211, 262], [251, 169]],
    "second example, stride 1": [[10, 12, 12], [18, 16, 16], [13, 9, 3]],
    "second example, stride 2": [[10, 12], [13, 3]],
}
POOLS = {
    "4x4, kernel 2": [[4, 8], [9, 8]],
    "5x5, kernel 3, ceil_mode=True": [[2, 3], [5, 1]],
    "5x5, kernel 3, ceil_mode=False": [[2]],
}
SHAPES = {
    "Conv2d(5, 10, 3) on 1x5x100x100": [1, 10, 98, 98],
    "its weight": [10, 5, 3, 3],
    "Sequential conv net on ones(64, 3, 28, 28)": [64, 10],
}
REFERENCE_COUNT = len(CONVOLUTIONS) + len(POOLS) + len(SHAPES)  # 12


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


def test_convolutions_match_the_notes(lesson):
    assert lesson.convolve_examples() == CONVOLUTIONS


def test_pooling_matches_the_notes(lesson):
    assert lesson.pooling_examples() == POOLS


def test_layer_shapes(lesson):
    assert lesson.layer_shapes() == SHAPES


def test_every_reference_value_is_printed(quick_run):
    run = quick_run(STEM)
    for label, value in {**CONVOLUTIONS, **POOLS, **SHAPES}.items():
        assert run.line(f"{label}: ") == f"{label}: {value}"
    assert REFERENCE_COUNT == 12


@pytest.mark.parametrize(
    ("n", "kernel", "padding", "stride", "dilation"),
    [(28, 3, 1, 1, 1), (28, 5, 0, 1, 1), (7, 3, 0, 2, 1), (32, 3, 2, 3, 2), (10, 4, 1, 2, 3)],
)
def test_output_size_formula_matches_conv2d(lesson, n, kernel, padding, stride, dilation):
    layer = nn.Conv2d(1, 1, kernel, padding=padding, stride=stride, dilation=dilation)
    expected = layer(torch.zeros(1, 1, n, n)).shape[-1]
    assert lesson.conv_output_size(n, kernel, padding, stride, dilation) == expected
    assert all(formula == real for _, formula, real in lesson.output_sizes())


def test_cnn_shapes(lesson):
    model = lesson.CNN()
    images = torch.zeros(2, 1, 28, 28)
    assert model.features(images).shape == (2, 64, 7, 7)
    assert model(images).shape == (2, 10)
    linears = [layer for layer in model.modules() if isinstance(layer, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(3136, 512), (512, 10)]


def test_activations_are_shown_as_layers(quick_run):
    run = quick_run(STEM)
    assert "nn.ReLU()([-2.0, 0.0, 2.0]) = [0.0, 0.0, 2.0]" in run.printed
    assert "nn.Sigmoid()([-2.0, 0.0, 2.0]) = [0.1192, 0.5, 0.8808]" in run.printed


def test_the_training_loop_lowers_the_loss(lesson):
    """A few passes of the lesson's own train_epoch over one fixed batch lower its loss."""
    torch.manual_seed(0)
    batch = [(torch.randn(64, 1, 28, 28), torch.randint(10, (64,)))]
    model, loss_fn = lesson.CNN(), nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = [lesson.train_epoch(model, batch, loss_fn, optimizer, "cpu") for _ in range(15)]
    assert losses[-1] < 0.5 * losses[0], losses
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*batch[0]), 32)
    _, accuracy = lesson.evaluate(model, loader, loss_fn, "cpu")
    assert accuracy > 0.5  # it has begun to memorize the batch


def test_the_quick_run_keeps_its_results(quick_run):
    run = quick_run(STEM)
    history, metrics = run.globals["history"], run.metrics
    assert isinstance(run.globals["model"], nn.Module)
    assert len(history["loss_history"]) == metrics["epochs"] == 4
    assert history["loss_history"][-1] < history["loss_history"][0]
    assert metrics["test_accuracy"] == history["test_accuracies"][-1]
    assert metrics["data"] == "stand-in" and metrics["dataset"] == "FashionMNIST"
    assert (run.out / "training.png").stat().st_size > 0
    assert run.line("epoch 1: train loss")


def test_bad_dataset_is_an_argparse_error(tmp_path):
    result = run_lesson_cli(STEM, "--dataset", "cifar", "--out", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--dataset: invalid choice: 'cifar'" in result.stderr


def test_corrupt_data_file_is_a_one_line_error(tmp_path):
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b truncated")
    result = run_lesson_cli(STEM, "--quick", "--dataset", "mnist", "--data-dir",
                            str(tmp_path / "data"), "--out", str(tmp_path / "out"))  # fmt: skip
    line = one_line_error(result)
    assert "train-labels-idx1-ubyte.gz" in line and "corrupt" in line


@pytest.mark.real_data
@pytest.mark.parametrize(("dataset", "name", "at_least"), [
    ("fashion", "FashionMNIST", 0.78), ("mnist", "MNIST", 0.95),
])  # fmt: skip
def test_the_cnn_learns_the_real_data(real_data_dir, tmp_path, dataset, name, at_least):
    # 200 batches of 128 with the default recipe, scored on the full real test split.
    run = run_script(STEM, tmp_path, "--data-dir", str(real_data_dir), "--dataset", dataset,
                     "--epochs", "1", "--train-images", "25600")  # fmt: skip
    assert "NOTICE" not in run.printed
    metrics = run.metrics
    assert "data" not in metrics and "stand_ins" not in metrics  # real data, not the stand-in
    assert metrics["dataset"] == name
    assert metrics["test_accuracy"] >= at_least, metrics["test_accuracy"]
