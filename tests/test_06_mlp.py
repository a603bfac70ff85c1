"""Lesson 06: softmax/cross-entropy reference values, the MLPs, the loops, real-data training."""

from __future__ import annotations

import pytest
import torch
from conftest import load_lesson, one_line_error, run_lesson_cli, run_script
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

STEM = "06_mlp"
BY_HAND = {"cross-entropy by hand (NumPy)": 0.9729}
WITH_PYTORCH = {
    "nn.CrossEntropyLoss": 0.9729,
    "batch loss, good predictions": 0.4966,
    "batch loss, poor predictions": 1.2389,
}
REFERENCE_COUNT = len(BY_HAND) + len(WITH_PYTORCH)  # 4
SGD, ADAM = "SGD lr 1e-3 (the notes)", "Adam lr 1e-3 (this lesson)"


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


def test_cross_entropy_by_hand(lesson):
    values = lesson.cross_entropy_by_hand()
    assert values["softmax(z)"] == [0.378, 0.342, 0.28]
    assert {key: values[key] for key in BY_HAND} == BY_HAND


def test_cross_entropy_with_pytorch(lesson):
    assert lesson.cross_entropy_with_pytorch() == WITH_PYTORCH


def test_every_reference_value_is_printed(quick_run):
    run = quick_run(STEM)
    for label, value in {**BY_HAND, **WITH_PYTORCH}.items():
        assert run.line(f"{label}: ") == f"{label}: {value}"
    assert run.line("softmax(z): ") == "softmax(z): [0.378, 0.342, 0.28]"
    assert run.metrics["cross_entropy"] == {"softmax(z)": [0.378, 0.342, 0.28], **BY_HAND,
                                            **WITH_PYTORCH}  # fmt: skip
    assert REFERENCE_COUNT == 4


def test_neural_network_shapes_and_parameters(lesson):
    model = lesson.NeuralNetwork()
    sizes = {name: list(p.shape) for name, p in model.named_parameters()}
    assert sizes["linear_relu_stack.0.weight"] == [512, 784]
    assert sizes["linear_relu_stack.2.weight"] == [512, 512]
    assert sizes["linear_relu_stack.4.weight"] == [10, 512]
    assert sum(p.numel() for p in model.parameters()) == 669_706
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_deeper_mlp_layer_sizes(lesson):
    model = lesson.DeeperMLP()
    linears = [layer for layer in model.modules() if isinstance(layer, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [
        (784, 512), (512, 256), (256, 128), (128, 64), (64, 10),
    ]  # fmt: skip
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_predict_is_the_argmax_of_the_softmax(lesson):
    torch.manual_seed(0)
    model, x = lesson.NeuralNetwork(), torch.rand(1, 28, 28)
    predicted, probability = lesson.predict(model, x)
    probabilities = torch.softmax(model(x), dim=1)[0]
    assert predicted == probabilities.argmax().item()
    assert probability == pytest.approx(probabilities.max().item())
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    lesson.predict(model, x)
    assert calls == [1]  # model(x), not model.forward(x): the hook ran


def test_model_is_printed_with_parameter_sizes(quick_run):
    run = quick_run(STEM)
    assert "NeuralNetwork(" in run.printed
    assert "linear_relu_stack.0.weight: size [512, 784]" in run.printed
    assert "linear_relu_stack.4.bias: size [10]" in run.printed
    assert "669,706 parameters" in run.printed
    assert run.line("a random input: predicted class ")
    assert run.globals["parameter_count"] == run.metrics["parameters"] == 669_706


def test_the_training_loop_lowers_the_loss_and_the_test_loop_scores(lesson):
    torch.manual_seed(0)
    labels = torch.arange(64) % 10
    patterns = torch.randn(10, 1, 28, 28)  # one pattern per class, plus noise
    images = patterns[labels] + 0.5 * torch.randn(64, 1, 28, 28)
    loader = DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=True)
    model, loss_fn = lesson.NeuralNetwork(), nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    before, _ = lesson.test_loop(loader, model, loss_fn, "cpu")
    losses = [lesson.train_loop(loader, model, loss_fn, optimizer, "cpu") for _ in range(10)]
    assert model.training  # train_loop switched to training mode
    after, accuracy = lesson.test_loop(loader, model, loss_fn, "cpu")
    assert losses[-1] < losses[0] and after < before / 2
    assert accuracy == 1.0
    assert not model.training  # test_loop switched to evaluation mode


def test_normalize_uses_training_statistics(lesson):
    train = TensorDataset(torch.rand(100, 1, 4, 4) * 0.5, torch.zeros(100))
    test = TensorDataset(torch.full((10, 1, 4, 4), 0.25), torch.zeros(10))
    mean, std = lesson.normalize(train, test)
    assert abs(train.tensors[0].mean().item()) < 1e-5
    assert abs(train.tensors[0].std().item() - 1) < 1e-4
    assert torch.allclose(test.tensors[0], torch.full((10, 1, 4, 4), (0.25 - mean) / std))


def test_adam_beats_the_notes_sgd_on_the_same_batches(lesson):
    torch.manual_seed(0)
    labels = torch.arange(640) % 10
    images = torch.randn(10, 1, 28, 28)[labels] + 0.5 * torch.randn(640, 1, 28, 28)
    train = TensorDataset(images, labels)
    test = DataLoader(TensorDataset(images[:200], labels[:200]), batch_size=100)
    results = lesson.compare_optimizers(train, test, 640, "cpu", seed=0)
    assert set(results) == {SGD, ADAM}
    (sgd_loss, sgd_accuracy), (adam_loss, adam_accuracy) = results[SGD], results[ADAM]
    assert adam_loss < sgd_loss and adam_accuracy > sgd_accuracy


def test_the_quick_run_keeps_its_results(quick_run):
    run = quick_run(STEM)
    history, metrics = run.globals["history"], run.metrics
    assert isinstance(run.globals["model"], run.globals["NeuralNetwork"])
    assert len(history["loss_history"]) == metrics["epochs"] == 3
    assert history["loss_history"][-1] < history["loss_history"][0]
    assert len(history["test_accuracies"]) == len(history["epoch_seconds"]) == 3
    assert metrics["test_accuracy"] == history["test_accuracies"][-1]
    # The stand-in is learnable: a working loop gets far above chance (0.1) on it.
    assert metrics["test_accuracy"] > 0.5
    assert metrics["data"] == "stand-in" and metrics["dataset"] == "FashionMNIST"
    assert metrics["recipe"] == "Adam lr 0.001"
    assert set(metrics["optimizer_comparison"]) == {SGD, ADAM}
    assert run.line(f"{SGD}: train loss") and run.line(f"{ADAM}: train loss")
    assert run.line("untrained: test loss")
    assert run.line("epoch 3: train loss")
    assert (run.out / "training.png").stat().st_size > 0


def test_bad_variant_is_an_argparse_error(tmp_path):
    result = run_lesson_cli(STEM, "--variant", "wide", "--out", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--variant: invalid choice: 'wide'" in result.stderr


def test_corrupt_data_file_is_a_one_line_error(tmp_path):
    raw = tmp_path / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"not a gzip file")
    result = run_lesson_cli(STEM, "--quick", "--data-dir", str(tmp_path / "data"),
                            "--out", str(tmp_path / "out"))  # fmt: skip
    line = one_line_error(result)
    assert "train-images-idx3-ubyte.gz" in line and "corrupt" in line


@pytest.mark.real_data
def test_default_recipe_learns_real_fashion_mnist(real_data_dir, tmp_path):
    # 300 batches of 128 with the default recipe (Adam), scored on the full real test split.
    run = run_script(STEM, tmp_path, "--data-dir", str(real_data_dir), "--epochs", "1",
                     "--train-images", "38400")  # fmt: skip
    assert "NOTICE" not in run.printed
    metrics = run.metrics
    assert "data" not in metrics and "stand_ins" not in metrics  # real data, not the stand-in
    assert metrics["dataset"] == "FashionMNIST"
    assert metrics["test_accuracy"] >= 0.80, metrics["test_accuracy"]
    accuracy = metrics["optimizer_comparison"]
    # The lesson's point: the notes' SGD lr 1e-3 lags far behind Adam after the same batches.
    assert accuracy[ADAM] > accuracy[SGD] + 0.15, accuracy


@pytest.mark.real_data
def test_the_deeper_variant_learns_real_mnist(real_data_dir, tmp_path):
    # 600 batches of 64 with the notes' SGD lr 0.01 momentum 0.5 (0.86 when measured).
    run = run_script(STEM, tmp_path, "--data-dir", str(real_data_dir), "--variant", "deeper",
                     "--epochs", "2", "--batch-size", "64", "--train-images", "19200")  # fmt: skip
    metrics = run.metrics
    assert "data" not in metrics and metrics["dataset"] == "MNIST"
    assert metrics["recipe"] == "SGD lr 0.01 momentum 0.5"
    assert isinstance(run.globals["model"], run.globals["DeeperMLP"])
    assert metrics["loss_history"][-1] < metrics["loss_history"][0]
    assert metrics["test_accuracy"] >= 0.75, metrics["test_accuracy"]
