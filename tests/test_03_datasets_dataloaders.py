"""Lesson 03: custom Datasets, DataLoader batches, transforms, malformed data files."""

from __future__ import annotations

import gzip
import json

import pytest
import torch
from conftest import load_lesson, one_line_error, run_lesson_cli, run_lesson_main

from common.data import DataError

STEM = "03_datasets_dataloaders"
DIABETES = "liuer/diabetes.csv.gz"


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


def test_the_image_folder_round_trip(lesson, tmp_path):
    samples = [(torch.rand(1, 28, 28), label) for label in (3, 7, 1)]
    folder = lesson.write_image_folder(samples, tmp_path / "images", count=3)
    assert (folder / "annotations.csv").read_text().splitlines() == [
        "sample_00.png,3",
        "sample_01.png,7",
        "sample_02.png,1",
    ]
    dataset = lesson.AnnotatedImages(folder)
    assert len(dataset) == 3
    image, label = dataset[1]
    assert image.size == (28, 28) and label == 7  # a PIL image: no transform given


def test_quick_run_reproduces_the_reference_values(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LESSONS_REQUIRE_REAL_DATA", raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    metrics = run_lesson_main(STEM, tmp_path, "--quick", "--data-dir", str(empty))
    values = metrics["values"]
    assert values["FashionMNIST batch"] == [64, 1, 28, 28] and values["labels batch"] == [64]
    assert values["ToTensor of a (3, 4, 6) array"] == [6, 3, 4]
    assert metrics["all_match"]
    assert (tmp_path / STEM / "fashion_mnist_samples.png").is_file()
    assert (tmp_path / STEM / "my_images" / "annotations.csv").is_file()
    assert capsys.readouterr().out.count("NOTICE") == 3  # FashionMNIST, diabetes, MNIST
    assert metrics["custom_dataset_size"] == 12 and metrics["custom_read_back_matches"]
    assert metrics["concat_size"] == 70000 and metrics["concat_continues_into_test"]
    assert metrics["split_sizes"] == [54000, 6000]
    assert json.loads((tmp_path / STEM / "metrics.json").read_text())["data"] == "stand-in"


@pytest.mark.real_data
def test_real_data_values(real_data_dir, tmp_path):
    metrics = run_lesson_main(STEM, tmp_path, "--quick", "--data-dir", str(real_data_dir))
    assert metrics["values"]["MNIST mean"] == pytest.approx(0.1307, abs=1e-4)
    assert metrics["values"]["MNIST std"] == pytest.approx(0.3081, abs=1e-4)
    assert metrics["reference_values"] == "5/5" and metrics["all_match"]
    assert metrics["values"]["FashionMNIST batch"] == [64, 1, 28, 28]
    assert metrics["values"]["labels batch"] == [64]
    assert metrics["values"]["ToTensor of a (3, 4, 6) array"] == [6, 3, 4]
    assert metrics["diabetes_rows"] == 759  # the complete hunkim copy
    # the folder the lesson wrote from real FashionMNIST samples reads back the same images
    assert metrics["custom_dataset_size"] == 12 and metrics["custom_read_back_matches"]
    assert metrics["concat_size"] == 70000 and metrics["split_sizes"] == [54000, 6000]
    assert (tmp_path / STEM / "fashion_mnist_samples.png").stat().st_size > 10_000


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
        gzip.compress(b"-0.29,0.49,0.18,-0.29,0,0.00,-0.53,-0.03,0\n" * 3)[:-12],  # truncated
        b"-0.29,0.49,0.18,-0.29,0,0.00,-0.53,-0.03,0\n",  # plain CSV named .gz
    ],
)
def test_a_malformed_diabetes_file_is_a_data_error_naming_it(lesson, tmp_path, content):
    root = _root_with_diabetes(tmp_path, content)
    with pytest.raises(DataError, match=r"diabetes\.csv\.gz"):
        lesson.DiabetesDataset(root / DIABETES)


def test_a_malformed_diabetes_file_stops_the_lesson_with_a_data_error(tmp_path, monkeypatch):
    monkeypatch.delenv("LESSONS_REQUIRE_REAL_DATA", raising=False)  # FashionMNIST: stand-in
    truncated = gzip.compress(b"-0.29,0.49,0.18,-0.29,0,0.00,-0.53,-0.03,0\n" * 20)[:-20]
    root = _root_with_diabetes(tmp_path, truncated)
    with pytest.raises(DataError, match=r"diabetes\.csv\.gz: expected a gzipped CSV"):
        run_lesson_main(STEM, tmp_path, "--quick", "--data-dir", str(root), "--no-download")


def test_a_malformed_file_on_the_command_line_is_one_line(tmp_path):
    root = _root_with_diabetes(tmp_path, gzip.compress(b"1,2\n"))
    flags = ["--quick", "--out", str(tmp_path / "out"), "--data-dir", str(root)]
    assert "diabetes.csv.gz" in one_line_error(run_lesson_cli(STEM, *flags))
