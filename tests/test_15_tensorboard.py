"""Lesson 15: what SummaryWriter logged is on disk, and TensorBoard's reader finds all of it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from conftest import load_lesson, run_lesson_cli, run_script
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.tensorboard import SummaryWriter

STEM = "15_tensorboard"
WEIGHTS = ("weights/1.weight", "weights/1.bias", "weights/3.weight", "weights/3.bias")
EPOCHS = 3  # the default; --quick keeps it, with 8 batches of 64 per epoch


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


def test_event_files_are_written_under_runs(quick_run):
    run = quick_run(STEM)
    folder = Path(run.metrics["run_dir"])
    assert folder == run.globals["run"] and folder.parent == run.out / "runs"
    for name in ("basics", "training"):
        events = list((folder / name).glob("events.out.tfevents.*"))
        assert len(events) == 1 and events[0].stat().st_size > 0, name
        assert run.line(f"run {name}: 1 event file, graph with ")
    assert (run.out / "training_curves.png").stat().st_size > 0


def test_basics_read_back(quick_run):
    run = quick_run(STEM)
    basics = run.metrics["logged"]["basics"]
    assert basics["scalars"] == {"y=x": 100}
    assert basics["images"] == {"fashion/one_image": 1, "fashion/batch": 3}
    assert basics["histograms"] == {}
    assert basics["graph_nodes"] > 0
    assert (
        "  scalars    y=x                    100 events, steps 0..99, last value 99" in run.printed
    )
    assert run.line("add_image: one (28, 28, 1) uint8 array (dataformats='HWC')")
    assert run.line("add_images: 3 batches of [16, 1, 28, 28] (steps 0, 1, 2)")
    assert run.line("add_graph: ") == (
        "add_graph: the Sequential net, ones(64, 3, 28, 28) -> [64, 10]"
    )


def test_the_graph_and_images_read_back(quick_run, lesson):
    run = quick_run(STEM)
    found = lesson.read_back(Path(run.metrics["run_dir"]) / "basics")
    assert found == run.globals["found"]["basics"]
    assert found["graph_nodes"] == run.metrics["logged"]["basics"]["graph_nodes"]
    # The single image is the HWC array, 28 x 28; a batch of 16 becomes one grid image.
    assert found["images"]["fashion/one_image"] == [(0, (28, 28))]
    assert [step for step, _ in found["images"]["fashion/batch"]] == [0, 1, 2]
    assert found["scalars"]["y=x"] == [(x, float(x)) for x in range(100)]


def test_training_curves_read_back(quick_run):
    run = quick_run(STEM)
    metrics, history = run.metrics, run.globals["history"]
    training = metrics["logged"]["training"]
    assert training["scalars"]["test/accuracy"] == training["scalars"]["test/loss"] == EPOCHS
    # About ten train/loss points per epoch: 8 batches of 64 in --quick -> one every batch.
    assert training["scalars"]["train/loss"] == len(history["train_loss_history"]) == 24
    assert training["histograms"] == dict.fromkeys(WEIGHTS, EPOCHS)
    assert training["graph_nodes"] > 0
    assert history["train_loss_history"][-1] < history["train_loss_history"][0]
    assert metrics["test_accuracy"] == history["test_accuracies"][-1]
    assert run.line(f"test accuracy after {EPOCHS} epochs: ")
    for epoch in range(1, EPOCHS + 1):
        assert run.line(f"epoch {epoch}/{EPOCHS}: train loss")


def test_values_read_back_match_what_was_logged(quick_run):
    run = quick_run(STEM)
    found, history = run.globals["found"]["training"], run.globals["history"]
    losses = [value for _, value in found["scalars"]["train/loss"]]
    assert losses == pytest.approx(history["train_loss_history"], rel=1e-6)  # stored as float32
    # Test metrics are logged after each epoch at the step of train/loss: 8 batches per epoch.
    steps = [step for step, _ in found["scalars"]["test/accuracy"]]
    assert steps == [8, 16, 24] == [step for step, _ in found["histograms"]["weights/1.bias"]]
    accuracies = [value for _, value in found["scalars"]["test/accuracy"]]
    assert accuracies == pytest.approx(history["test_accuracies"])


def test_train_and_log_lowers_the_loss_and_logs_each_epoch(lesson, tmp_path):
    torch.manual_seed(0)
    labels = torch.arange(200) % 10
    images = torch.randn(10, 1, 28, 28)[labels] + 0.5 * torch.randn(200, 1, 28, 28)
    loader = DataLoader(TensorDataset(images, labels), batch_size=20, shuffle=True)
    with SummaryWriter(log_dir=str(tmp_path)) as writer:
        history = lesson.train_and_log(writer, lesson.fashion_mlp(), loader, loader, 4, "cpu")
    losses = history["train_loss_history"]
    assert len(losses) == 40 and losses[-1] < 0.5 * losses[0], losses
    assert history["test_accuracies"][-1] > 0.9
    found = lesson.read_back(tmp_path)
    assert [step for step, _ in found["scalars"]["test/loss"]] == [10, 20, 30, 40]
    assert found["graph_nodes"] == 0  # train_and_log logs no graph; the lesson adds it first


def test_prints_how_to_open_tensorboard(quick_run):
    run = quick_run(STEM)
    assert f"    tensorboard --logdir {run.out / 'runs'}" in run.printed.splitlines()
    assert "http://localhost:6006" in run.printed


def test_old_runs_are_pruned_but_foreign_folders_kept(lesson, tmp_path):
    runs = tmp_path / "runs"
    for index in range(5):
        old = runs / f"20200101-00000{index}" / "training"
        old.mkdir(parents=True)
        (old / f"events.out.tfevents.{index}").write_bytes(b"x")
    mine = runs / "20190101-000000"  # looks like a run but holds a file we did not write
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me", encoding="utf-8")
    (runs / "my_experiment").mkdir()

    run = lesson.new_run_dir(runs, keep=3)
    assert not run.exists() and run.parent == runs and re.fullmatch(lesson.RUN_NAME, run.name)
    remaining = sorted(p.name for p in runs.iterdir())
    # The two newest old runs stay (with the new one that makes three); foreign folders stay.
    assert remaining == ["20190101-000000", "20200101-000003", "20200101-000004", "my_experiment"]
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "keep me"


def test_repeated_runs_keep_a_bounded_number(lesson, tmp_path):
    runs = tmp_path / "runs"
    for _ in range(lesson.KEEP_RUNS + 2):
        run = lesson.new_run_dir(runs)
        (run / "basics").mkdir(parents=True)  # what SummaryWriter would create
        (run / "basics" / "events.out.tfevents.0").write_bytes(b"x")
    assert len(list(runs.iterdir())) == lesson.KEEP_RUNS  # same-second runs get suffixes too


@pytest.mark.real_data
def test_real_fashion_mnist_quick(real_data_dir, tmp_path):
    run = run_script(STEM, tmp_path, "--quick", "--data-dir", str(real_data_dir))
    assert "NOTICE" not in run.printed
    metrics = run.metrics
    assert "data" not in metrics and "stand_ins" not in metrics  # real data, not the stand-in
    assert metrics["train_loss_history"][-1] < metrics["train_loss_history"][0]
    assert metrics["test_accuracy"] > 0.6  # 512 real images, 3 epochs


@pytest.mark.real_data
def test_one_real_epoch_is_logged_and_learns(real_data_dir, tmp_path):
    # One full epoch: 938 batches of 64, a train/loss point every 93 batches.
    run = run_script(STEM, tmp_path, "--epochs", "1", "--data-dir", str(real_data_dir))
    metrics = run.metrics
    assert "data" not in metrics
    assert metrics["logged"]["training"]["scalars"] == {
        "train/loss": 10, "test/loss": 1, "test/accuracy": 1,
    }  # fmt: skip
    assert metrics["test_accuracy"] > 0.8, metrics["test_accuracy"]


def test_zero_epochs_is_an_argparse_error(tmp_path):
    result = run_lesson_cli(STEM, "--epochs", "0", "--out", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--epochs" in result.stderr and len(result.stderr.strip().splitlines()) == 1
