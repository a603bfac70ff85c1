"""Lesson 03: custom Datasets, DataLoader batches, transforms, real MNIST statistics, bad files."""

from __future__ import annotations

import gzip
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import load_lesson, one_line_error, run_lesson_cli, run_script
from torchvision.transforms import v2

from common.data import DataError, vision_dataset

STEM = "03_datasets_dataloaders"
DIABETES = "liuer/diabetes.csv.gz"
ROW = b"-0.29,0.49,0.18,-0.29,0,0.00,-0.53,-0.03,0\n"
# The reference values: two shapes of a batch, ToTensor's shape, MNIST's mean and std.
BATCH, LABELS, TO_TENSOR, MNIST_MEAN, MNIST_STD = [64, 1, 28, 28], [64], [6, 3, 4], 0.1307, 0.3081
REFERENCE_COUNT = 5


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


def test_the_image_folder_round_trip(lesson, tmp_path):
    samples = [(torch.rand(1, 28, 28), label) for label in (3, 7, 1)]
    annotations = lesson.write_image_folder(samples, tmp_path / "images", count=3)
    assert annotations.read_text(encoding="utf-8").splitlines() == [
        "sample_00.png,3",
        "sample_01.png,7",
        "sample_02.png,1",
    ]
    dataset = lesson.AnnotatedImages(annotations, annotations.parent)
    assert len(dataset) == 3
    image, label = dataset[1]  # no transform: uint8 C x H x W, as read_image gives
    assert image.dtype == torch.uint8 and image.shape == (1, 28, 28)
    assert label == 7 and type(label) is int
    assert torch.allclose(image.float() / 255, samples[1][0], atol=1 / 255)
    transformed = lesson.AnnotatedImages(annotations, annotations.parent,
                                         transform=v2.ToDtype(torch.float32, scale=True),
                                         target_transform=v2.Lambda(lesson.one_hot))  # fmt: skip
    image, label = transformed[2]
    assert image.dtype == torch.float32 and label.tolist() == [0, 1] + [0] * 8


def test_one_hot_target_transform(lesson):
    assert lesson.one_hot(3).tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert v2.Lambda(lesson.one_hot)(np.int64(9)).argmax().item() == 9
    assert lesson.one_hot(0, classes=3).tolist() == [1, 0, 0]


def test_pixel_mean_std_scales_to_unit_range(lesson):
    mean, std = lesson.pixel_mean_std(torch.tensor([[0, 255], [0, 255]], dtype=torch.uint8))
    assert mean == pytest.approx(0.5) and std == pytest.approx((1 / 3) ** 0.5)


def test_the_diabetes_dataset_and_the_collate_fn(lesson, tmp_path):
    path = tmp_path / "diabetes.csv.gz"
    path.write_bytes(gzip.compress(ROW * 5))
    table = lesson.DiabetesDataset(path)
    assert len(table) == 5
    features, label = table[4]
    assert features.shape == (8,) and label.tolist() == [0.0]
    batch = lesson.features_only([table[i] for i in range(3)])
    assert batch.shape == (3, 8)


def test_the_quick_run_on_the_stand_ins(quick_run):
    run = quick_run(STEM)
    assert run.printed.count("NOTICE") == 3  # FashionMNIST, diabetes, MNIST
    assert run.line("FashionMNIST batch: ") == f"FashionMNIST batch: {BATCH}"
    assert run.line("labels batch: ") == f"labels batch: {LABELS}"
    assert (
        run.line("ToTensor of a (3, 4, 6) array: ") == f"ToTensor of a (3, 4, 6) array: {TO_TENSOR}"
    )
    assert run.line("v2.ToImage of the same array: ").endswith(str(TO_TENSOR))
    assert run.line("ToTensor scales uint8 to [0, 1]: ").endswith("[0.0, 0.501960813999176, 1.0]")
    assert (
        list(run.globals["images"].shape) == BATCH and list(run.globals["labels"].shape) == LABELS
    )
    metrics = run.metrics
    assert metrics["data"] == "stand-in" and metrics["headline"] == "mnist_mean"
    assert metrics["batch_shape"] == BATCH and metrics["to_tensor_shape"] == TO_TENSOR
    # --quick measures MNIST on 10,000 images; the stand-in's statistics are its own
    assert metrics["mnist_images_measured"] == 10_000
    assert run.line("MNIST pixels (10,000 images): mean ")
    normalized = run.globals["normalized"]
    assert abs(normalized.mean().item()) < 0.05 and abs(normalized.std().item() - 1) < 0.05
    assert list(run.globals["resized"].shape) == [1, 32, 32]
    assert metrics["custom_dataset_size"] == 12 and metrics["custom_read_back_matches"]
    first_label = run.globals["train_data"][0][1]
    one_hot = [int(i == first_label) for i in range(10)]
    assert run.line("12 images in my_images/").endswith(f"one-hot label {one_hot}")
    assert metrics["diabetes_rows"] == 759
    assert run.line("diabetes in batches of 64: ") == (
        "diabetes in batches of 64: 12, with drop_last: 11 (759 = 11 x 64 + 55)"
    )
    assert run.line("a collate_fn that keeps only the features: ").endswith("[4, 8]")
    assert metrics["concat_size"] == 70_000 and metrics["split_sizes"] == [54_000, 6_000]
    assert run.line("item 60,000 of the concatenation is test item 0: ").endswith("True")
    assert (run.out / "fashion_mnist_samples.png").stat().st_size > 0
    assert (run.out / "my_images" / "annotations.csv").is_file()


@pytest.mark.real_data
def test_the_mnist_mean_and_std_from_the_real_data(lesson, real_data_dir):
    mnist = vision_dataset("MNIST", SimpleNamespace(data_dir=real_data_dir, offline=True))
    mean, std = lesson.pixel_mean_std(mnist.data)
    assert (round(mean, 4), round(std, 4)) == (MNIST_MEAN, MNIST_STD)


@pytest.mark.real_data
def test_the_full_run_on_the_real_data(real_data_dir, tmp_path):
    run = run_script(STEM, tmp_path, "--data-dir", str(real_data_dir))
    assert "NOTICE" not in run.printed
    metrics = run.metrics
    assert "data" not in metrics and "stand_ins" not in metrics  # real data, not the stand-in
    assert run.line("MNIST pixels (60,000 images): ") == (
        f"MNIST pixels (60,000 images): mean {MNIST_MEAN}, std {MNIST_STD}"
    )
    assert metrics["mnist_mean"] == pytest.approx(MNIST_MEAN, abs=5e-5)
    assert metrics["mnist_std"] == pytest.approx(MNIST_STD, abs=5e-5)
    assert metrics["batch_shape"] == BATCH and metrics["labels_shape"] == LABELS
    assert metrics["to_tensor_shape"] == TO_TENSOR
    assert run.line("one sample: ").endswith("label 9 (Ankle boot)")  # FashionMNIST's first
    assert metrics["diabetes_rows"] == 759  # the complete hunkim copy
    assert run.line("diabetes: ").endswith("label 0")
    # the folder the lesson wrote from real FashionMNIST samples reads back the same images
    assert metrics["custom_dataset_size"] == 12 and metrics["custom_read_back_matches"]
    assert run.line("2048 images read in 8 batches with num_workers=2")
    assert metrics["concat_size"] == 70_000 and metrics["split_sizes"] == [54_000, 6_000]
    assert (tmp_path / "fashion_mnist_samples.png").stat().st_size > 10_000
    assert REFERENCE_COUNT == 5


def _root_with_diabetes(tmp_path, content: bytes):
    root = tmp_path / "data"
    (root / "liuer").mkdir(parents=True)
    (root / DIABETES).write_bytes(content)
    return root


@pytest.mark.parametrize(
    "content",
    [
        gzip.compress(b"1,2,3\n4,5,6\n"),  # 3 columns, not 9
        gzip.compress(b"0.1,a,b,c,d,e,f,g,1\n"),  # not numbers
        gzip.compress(ROW * 3)[:-12],  # truncated
        ROW,  # plain CSV named .gz
    ],
)
def test_a_malformed_diabetes_file_is_a_data_error_naming_it(lesson, tmp_path, content):
    root = _root_with_diabetes(tmp_path, content)
    with pytest.raises(DataError, match=r"diabetes\.csv\.gz"):
        lesson.DiabetesDataset(root / DIABETES)


def test_a_malformed_diabetes_file_stops_the_lesson_with_a_data_error(tmp_path, monkeypatch):
    monkeypatch.delenv("LESSONS_REQUIRE_REAL_DATA", raising=False)  # FashionMNIST: stand-in
    root = _root_with_diabetes(tmp_path, gzip.compress(ROW * 20)[:-20])
    with pytest.raises(DataError, match=r"diabetes\.csv\.gz: expected a gzipped CSV"):
        run_script(STEM, tmp_path / "out", "--quick", "--data-dir", str(root), "--no-download")


def test_a_malformed_file_on_the_command_line_is_one_line(tmp_path):
    root = _root_with_diabetes(tmp_path, gzip.compress(b"1,2\n"))
    flags = ["--quick", "--out", str(tmp_path / "out"), "--data-dir", str(root)]
    assert "diabetes.csv.gz" in one_line_error(run_lesson_cli(STEM, *flags))
