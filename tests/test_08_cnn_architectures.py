"""Lesson 08: architectures' shapes and sizes, train vs eval mode, the image-folder path."""

from __future__ import annotations

import pytest
import torch
from conftest import load_lesson, one_line_error, run_lesson_cli, run_lesson_main
from PIL import Image

from common.data import DataError

STEM = "08_cnn_architectures"
JPEG_COPY = "CIFAR10-jpg"


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


def test_inception_module_concatenates_to_88_channels(lesson):
    out = lesson.InceptionA(10)(torch.zeros(2, 10, 12, 12))
    assert out.shape == (2, 88, 12, 12)  # 16 + 24 + 24 + 24, spatial size kept


def test_nets_end_in_the_notes_fully_connected_sizes(lesson):
    assert lesson.Net().fc1.in_features == 400
    assert lesson.InceptionNet().fc.in_features == 1408
    assert lesson.ResidualNet().fc.in_features == 512
    assert lesson.Net()(torch.zeros(3, 3, 32, 32)).shape == (3, 10)
    assert lesson.InceptionNet()(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    assert lesson.ResidualNet()(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    counts = {
        name: lesson.parameter_count(model())
        for name, model in [
            ("net", lesson.Net),
            ("inception", lesson.InceptionNet),
            ("resnet", lesson.ResidualNet),
        ]
    }
    assert counts == {"net": 62006, "inception": 97298, "resnet": 41514}


def test_resnet_block_downsamples_its_shortcut(lesson):
    block = lesson.ResNetBlock(64, 128, stride=2)
    assert block(torch.zeros(2, 64, 32, 32)).shape == (2, 128, 16, 16)
    assert isinstance(block.shortcut[0], torch.nn.Conv2d) and block.shortcut[0].stride == (2, 2)
    assert block.conv1.bias is None  # BatchNorm follows: a conv bias would be redundant
    same = lesson.ResNetBlock(64, 64)
    assert isinstance(same.shortcut, torch.nn.Identity)


def test_train_and_eval_modes_differ(lesson, capsys):
    assert lesson.train_vs_eval() is True
    out = capsys.readouterr().out
    assert "train mode, same input twice: equal outputs? False" in out
    assert "eval mode, same input twice: equal outputs? True" in out


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
    metrics = run_lesson_main(
        STEM, tmp_path, "--quick", "--epochs", "15", "--image-folder", str(folder)
    )
    assert metrics["test_accuracy"] == 1.0  # red vs blue: trivially separable
    assert set(metrics["per_class_accuracy"]) == {"cat", "dog"}
    assert (tmp_path / STEM / "predictions.png").is_file()


def test_a_missing_image_folder_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        run_lesson_main(STEM, tmp_path, "--quick", "--image-folder", str(tmp_path / "nowhere"))


def test_a_missing_image_folder_on_the_command_line_is_one_line(tmp_path):
    flags = ["--quick", "--out", str(tmp_path), "--image-folder", str(tmp_path / "nowhere")]
    assert one_line_error(run_lesson_cli(STEM, *flags)).startswith("error: --image-folder")


def test_an_unreadable_image_is_a_one_line_error_naming_it(tmp_path):
    folder = _tiny_image_folder(tmp_path / "pets")
    (folder / "train" / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    flags = ["--quick", "--out", str(tmp_path), "--image-folder", str(folder)]
    line = one_line_error(run_lesson_cli(STEM, *flags))
    assert "cannot read" in line and "broken.jpg" in line


def test_quick_run_prints_the_reference_values(tmp_path, capsys):
    metrics = run_lesson_main(STEM, tmp_path, "--quick", "--model", "resnet")
    values = metrics["values"]
    assert values["InceptionA channels (16+24+24+24)"] == 88
    assert values["Inception net fc inputs (88x4x4)"] == 1408
    assert values["residual net fc inputs (32x4x4)"] == 512
    assert values["Net fc1 inputs (16x5x5)"] == 400
    assert values["ResNetBlock(64, 128, stride 2) on 2x64x32x32"] == [2, 128, 16, 16]
    assert metrics["all_match"] is True and metrics["train_vs_eval_differ"] is True
    assert metrics["parameters"] == {"cifar_net": 62006, "inception": 97298, "resnet": 41514}
    assert (
        len(metrics["loss_history"]) == 2
        and metrics["loss_history"][1] < metrics["loss_history"][0]
    )
    assert len(metrics["epoch_seconds"]) == 2
    assert "InceptionA channels (16+24+24+24): 88" in capsys.readouterr().out


def test_help_shows_each_models_default_epochs():
    result = run_lesson_cli(STEM, "--help")
    assert result.returncode == 0
    assert "cifar_net 12, inception 3, resnet 3" in " ".join(result.stdout.split())


def test_unknown_model_exits_2(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        run_lesson_main(STEM, tmp_path, "--model", "vgg")
    assert exit_info.value.code == 2


@pytest.mark.real_data
def test_cifar_net_learns_the_real_jpeg_copy(real_data_dir, tmp_path):
    metrics = run_lesson_main(
        STEM,
        tmp_path,
        "--image-folder",
        str(real_data_dir / JPEG_COPY),
        "--train-images",
        "10000",
        "--epochs",
        "2",
    )
    assert len(metrics["per_class_accuracy"]) == 10
    assert metrics["test_accuracy"] >= 0.30  # chance is 0.10


@pytest.mark.real_data
def test_residual_net_learns_real_mnist(real_data_dir, tmp_path):
    metrics = run_lesson_main(
        STEM,
        tmp_path,
        "--model",
        "resnet",
        "--data-dir",
        str(real_data_dir),
        "--train-images",
        "6000",
        "--epochs",
        "1",
    )
    assert metrics["test_accuracy"] >= 0.90
