"""Lesson 08: the architectures' shapes and sizes, train vs eval mode, training, image folders."""

from __future__ import annotations

import pytest
import torch
from conftest import load_lesson, one_line_error, run_lesson_cli, run_script
from PIL import Image
from torch import nn

from common.data import CIFAR10_CLASSES, DataError

STEM = "08_cnn_architectures"
JPEG_COPY = "CIFAR10-jpg"
# The shapes and channel counts of the notes (7 values), each printed as "label: value".
NET = {"Net on 2x3x32x32": [2, 10], "Net fc1 inputs (16x5x5)": 400}
INCEPTION = {"InceptionA channels (16+24+24+24)": 88, "Inception net fc inputs (88x4x4)": 1408}
RESIDUAL = {
    "residual net fc inputs (32x4x4)": 512,
    "ResNetBlock(64, 128, stride 2) on 2x64x32x32": [2, 128, 16, 16],
    "ResNetBlock(64, 64) on 2x64x32x32": [2, 64, 32, 32],
}
PARAMETERS = {"cifar_net": 62006, "inception": 97298, "resnet": 41514}
TRAIN_VS_EVAL = {
    "train mode, same input twice: equal outputs?": False,
    "eval mode, same input twice: equal outputs?": True,
}
REFERENCES = {**NET, **INCEPTION, **RESIDUAL}


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


def test_the_section_functions_return_the_reference_values(lesson):
    assert lesson.net_shapes() == {**NET, "Net parameters": PARAMETERS["cifar_net"]}
    assert lesson.inception_shapes() == {
        **INCEPTION,
        "Inception net parameters": PARAMETERS["inception"],
    }
    shapes = lesson.residual_shapes()
    assert shapes == {**RESIDUAL, "residual net parameters": PARAMETERS["resnet"]}
    assert len(REFERENCES) == 7


def test_every_reference_value_is_printed(quick_run):
    run = quick_run(STEM)
    for label, value in REFERENCES.items():
        assert run.line(f"{label}: ") == f"{label}: {value}"
    for label, count in zip(["Net", "Inception net", "residual net"], PARAMETERS.values()):
        assert run.line(f"{label} parameters: ") == f"{label} parameters: {count}"


def test_the_nets_map_their_images_to_ten_logits(lesson):
    assert lesson.Net()(torch.zeros(3, 3, 32, 32)).shape == (3, 10)
    assert lesson.inception_net()(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert lesson.residual_net()(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    # Each Inception branch keeps H x W, so the concatenation works; the channels add up.
    assert lesson.InceptionA(20)(torch.zeros(1, 20, 7, 7)).shape == (1, 88, 7, 7)
    block = lesson.ResidualBlock(16)
    x = torch.randn(2, 16, 6, 6)
    assert block(x).shape == x.shape
    for conv in (block.conv1, block.conv2):  # F(x) = 0 leaves relu(x): the identity path
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
    assert torch.equal(block(x), torch.relu(x))


def test_batchnorm_follows_a_conv_without_bias_and_the_shortcut_downsamples(lesson):
    block = lesson.ResNetBlock(64, 128, stride=2)
    assert block.conv1.bias is None and block.conv2.bias is None
    assert isinstance(block.bn1, nn.BatchNorm2d) and block.bn1.num_features == 128
    conv, norm = block.shortcut
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (2, 2)
    assert conv.bias is None and isinstance(norm, nn.BatchNorm2d)
    assert isinstance(lesson.ResNetBlock(64, 64).shortcut, nn.Identity)


def test_train_and_eval_modes_differ(lesson, quick_run):
    assert lesson.train_vs_eval() == TRAIN_VS_EVAL
    run = quick_run(STEM)
    for label, value in TRAIN_VS_EVAL.items():
        assert run.line(label) == f"{label} {value}"


def test_the_training_loop_lowers_the_loss(lesson):
    """The lesson's own train_epoch, repeated over one fixed batch, memorizes it."""
    torch.manual_seed(0)
    batch = [(torch.randn(64, 3, 32, 32), torch.randint(10, (64,)))]
    model = lesson.Net().eval()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    losses = [
        lesson.train_epoch(model, batch, nn.CrossEntropyLoss(), optimizer, scheduler, "cpu")
        for _ in range(30)
    ]
    assert losses[-1] < 0.5 * losses[0], losses
    assert model.training  # train_epoch switched BatchNorm and Dropout to training mode
    with torch.no_grad():
        assert (model.eval()(batch[0][0]).argmax(1) == batch[0][1]).float().mean() > 0.5
    # With flips on, the loop still runs and returns a finite loss.
    flipped = lesson.train_epoch(
        model, batch, nn.CrossEntropyLoss(), optimizer, scheduler, "cpu", augment=True
    )
    assert 0 < flipped < float("inf")


def test_the_quick_run_keeps_its_results(quick_run):
    run = quick_run(STEM)
    history, metrics = run.globals["history"], run.metrics
    assert isinstance(run.globals["model"], run.globals["Net"])
    assert len(history["loss_history"]) == 2
    assert history["loss_history"][-1] < history["loss_history"][0]
    assert metrics["test_accuracy"] == history["accuracy_history"][-1]
    assert metrics["data"] == "stand-in" and metrics["model"] == "cifar_net"
    per_class, predictions = metrics["per_class_accuracy"], run.globals["predictions"]
    labels = run.globals["test_labels"]
    assert list(per_class) == list(CIFAR10_CLASSES)
    for index, name in enumerate(CIFAR10_CLASSES):  # the share right among that class's images
        right = (predictions[labels == index] == index).float().mean().item()
        assert per_class[name] == pytest.approx(right, abs=1e-4)
    assert run.line("accuracy per class: airplane ")
    assert run.line("512 training and 256 test images of [3, 32, 32], 10 classes")
    assert run.line("epoch 2: train loss")
    assert (run.out / "predictions.png").stat().st_size > 0


def _tiny_image_folder(root, classes=("cat", "dog"), per_class=6):
    for split in ("train", "test"):
        for label, name in enumerate(classes):
            (root / split / name).mkdir(parents=True)
            for index in range(per_class):
                color = (200, 30, 30) if label == 0 else (30, 30, 200)
                Image.new("RGB", (40, 36), color).save(root / split / name / f"{index}.png")
    return root


def test_any_image_folder_trains_resized_to_32(tmp_path):
    folder = _tiny_image_folder(tmp_path / "pets")
    run = run_script(STEM, tmp_path / "out", "--quick", "--epochs", "15",
                     "--image-folder", str(folder))  # fmt: skip
    assert run.globals["train_images"].shape == (12, 3, 32, 32)
    assert run.metrics["test_accuracy"] == 1.0  # red vs blue: trivially separable
    assert set(run.metrics["per_class_accuracy"]) == {"cat", "dog"}
    assert (tmp_path / "out" / "predictions.png").is_file()


def test_a_missing_image_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        run_script(STEM, tmp_path, "--quick", "--image-folder", str(tmp_path / "nowhere"))


def test_a_missing_image_folder_on_the_command_line_is_one_line(tmp_path):
    flags = ["--quick", "--out", str(tmp_path), "--image-folder", str(tmp_path / "nowhere")]
    assert one_line_error(run_lesson_cli(STEM, *flags)).startswith("error: --image-folder")


def test_an_unreadable_image_is_a_one_line_error_naming_it(tmp_path):
    folder = _tiny_image_folder(tmp_path / "pets")
    (folder / "train" / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    flags = ["--quick", "--out", str(tmp_path), "--image-folder", str(folder)]
    line = one_line_error(run_lesson_cli(STEM, *flags))
    assert "cannot read" in line and "broken.jpg" in line


def test_a_split_without_class_folders_or_with_other_classes_is_a_data_error(lesson, tmp_path):
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="--image-folder: "):
        lesson.image_folder_split(tmp_path / "empty", "train")
    folder = _tiny_image_folder(tmp_path / "pets")
    with pytest.raises(DataError, match="other classes than train/"):
        lesson.image_folder_split(folder, "test", classes=["cat", "cow"])


def test_an_image_folder_for_an_mnist_model_is_a_data_error(tmp_path):
    folder = _tiny_image_folder(tmp_path / "pets")
    with pytest.raises(DataError, match="--image-folder trains cifar_net"):
        run_script(STEM, tmp_path, "--model", "resnet", "--image-folder", str(folder))


def test_help_shows_each_models_default_epochs():
    result = run_lesson_cli(STEM, "--help")
    assert result.returncode == 0
    assert "cifar_net 12, inception 3, resnet 3" in " ".join(result.stdout.split())


def test_unknown_model_is_an_argparse_error(tmp_path):
    result = run_lesson_cli(STEM, "--model", "vgg", "--out", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--model: invalid choice: 'vgg'" in result.stderr


@pytest.mark.real_data
def test_cifar_net_learns_the_real_jpeg_copy(real_data_dir, tmp_path):
    # 10,000 of the 50,000 training JPEGs, 2 epochs, scored on all 10,000 test JPEGs.
    run = run_script(STEM, tmp_path, "--image-folder", str(real_data_dir / JPEG_COPY),
                     "--train-images", "10000", "--epochs", "2")  # fmt: skip
    metrics = run.metrics
    assert "data" not in metrics and len(run.globals["test_labels"]) == 10_000
    assert list(metrics["per_class_accuracy"]) == list(CIFAR10_CLASSES)
    assert metrics["test_accuracy"] >= 0.30, metrics["test_accuracy"]  # chance is 0.10


@pytest.mark.real_data
# One epoch on part of the training set. Inception needs 12,000 images here: a one-cycle
# schedule of only 94 batches warms up too fast for it, and its loss goes to nan.
@pytest.mark.parametrize(("model", "images"), [("resnet", "6000"), ("inception", "12000")])
def test_the_mnist_nets_learn_real_mnist(real_data_dir, tmp_path, model, images):
    run = run_script(STEM, tmp_path, "--model", model, "--data-dir", str(real_data_dir),
                     "--train-images", images, "--epochs", "1")  # fmt: skip
    assert "NOTICE" not in run.printed and "data" not in run.metrics
    assert run.metrics["test_accuracy"] >= 0.90, run.metrics["test_accuracy"]  # chance is 0.10
