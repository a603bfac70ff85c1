"""Lesson 15: what SummaryWriter logged is on disk, and TensorBoard's reader finds all of it."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from conftest import load_lesson, run_lesson_main

STEM = "15_tensorboard"
WEIGHTS = ("weights/1.weight", "weights/1.bias", "weights/3.weight", "weights/3.bias")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("lesson15")
    capture = pytest.MonkeyPatch()
    buffer = io.StringIO()
    capture.setattr(sys, "stdout", buffer)
    try:
        metrics = run_lesson_main(STEM, tmp_path, "--quick")
    finally:
        capture.undo()
    return metrics, buffer.getvalue(), tmp_path / STEM


def test_event_files_are_written_under_runs(quick_run):
    metrics, _, out = quick_run
    run = Path(metrics["run_dir"])
    assert run.parent == out / "runs"
    for name in ("basics", "training"):
        events = list((run / name).glob("events.out.tfevents.*"))
        assert len(events) == 1 and events[0].stat().st_size > 0, name
    assert (out / "training_curves.png").is_file()


def test_basics_read_back(quick_run):
    metrics, printed, _ = quick_run
    basics = metrics["logged"]["basics"]
    assert basics["scalars"] == {"y=x": 100}
    assert basics["images"] == {"fashion/one_image": 1, "fashion/batch": 3}
    assert basics["graph_nodes"] > 0
    assert "y=x                    100 events, steps 0..99, last value 99" in printed
    assert "add_image: one (28, 28, 1) uint8 array (dataformats='HWC')" in printed
    assert "add_images: 3 batches of [16, 1, 28, 28]" in printed
    assert "ones(64, 3, 28, 28) -> [64, 10]" in printed


def test_the_graph_is_the_sequential_net(quick_run, tmp_path):
    metrics, _, _ = quick_run
    lesson = load_lesson(STEM)
    found = lesson.read_back(Path(metrics["run_dir"]) / "basics")
    assert found["graph_nodes"] == metrics["logged"]["basics"]["graph_nodes"]
    # The single image is the HWC array, 28 x 28; a batch of 16 becomes one grid image.
    assert found["images"]["fashion/one_image"] == [(0, (28, 28))]
    assert [step for step, _ in found["images"]["fashion/batch"]] == [0, 1, 2]
    assert found["scalars"]["y=x"] == [(x, float(x)) for x in range(100)]


def test_training_curves_read_back(quick_run):
    metrics, printed, _ = quick_run
    training = metrics["logged"]["training"]
    epochs = 3
    assert training["scalars"]["test/accuracy"] == epochs
    assert training["scalars"]["test/loss"] == epochs
    # About ten train/loss points per epoch: 8 batches of 64 in --quick -> one every batch.
    assert training["scalars"]["train/loss"] == len(metrics["train_loss_history"]) == 24
    assert training["histograms"] == dict.fromkeys(WEIGHTS, epochs)
    assert training["graph_nodes"] > 0
    history = metrics["train_loss_history"]
    assert history[-1] < history[0]
    assert f"Test accuracy after {epochs} epochs" in printed
    for epoch in range(1, epochs + 1):
        assert f"epoch {epoch}/{epochs}: train loss" in printed


def test_values_read_back_match_what_was_logged(quick_run):
    metrics, _, _ = quick_run
    lesson = load_lesson(STEM)
    found = lesson.read_back(Path(metrics["run_dir"]) / "training")
    losses = [value for _, value in found["scalars"]["train/loss"]]
    assert losses == pytest.approx(metrics["train_loss_history"], rel=1e-6)  # stored as float32
    # Test metrics are logged after each epoch at the step of train/loss: 8 batches per epoch.
    steps = [step for step, _ in found["scalars"]["test/accuracy"]]
    assert steps == [8, 16, 24] == [step for step, _ in found["histograms"]["weights/1.bias"]]
    assert found["scalars"]["test/accuracy"][-1][1] == pytest.approx(metrics["test_accuracy"])


def test_prints_how_to_open_tensorboard(quick_run):
    _, printed, out = quick_run
    assert f"tensorboard --logdir {out / 'runs'}" in printed
    assert "http://localhost:6006" in printed


def test_old_runs_are_pruned_but_foreign_folders_kept(tmp_path):
    lesson = load_lesson(STEM)
    runs = tmp_path / "runs"
    for index in range(5):
        old = runs / f"20200101-00000{index}" / "training"
        old.mkdir(parents=True)
        (old / f"events.out.tfevents.{index}").write_bytes(b"x")
    mine = runs / "20190101-000000"  # looks like a run but holds a file we did not write
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    (runs / "my_experiment").mkdir()

    run = lesson.new_run_dir(runs, keep=3)
    assert not run.exists() and run.parent == runs and lesson.RUN_NAME.match(run.name)
    remaining = sorted(p.name for p in runs.iterdir())
    # The two newest old runs stay (with the new one that makes three); foreign folders stay.
    assert remaining == ["20190101-000000", "20200101-000003", "20200101-000004", "my_experiment"]
    assert (mine / "notes.txt").read_text() == "keep me"


def test_repeated_runs_keep_a_bounded_number(tmp_path, monkeypatch):
    lesson = load_lesson(STEM)
    runs = tmp_path / "runs"
    for _ in range(lesson.KEEP_RUNS + 2):
        run = lesson.new_run_dir(runs)
        (run / "basics").mkdir(parents=True)  # what SummaryWriter would create
        (run / "basics" / "events.out.tfevents.0").write_bytes(b"x")
    assert len(list(runs.iterdir())) == lesson.KEEP_RUNS  # same-second runs get suffixes too


@pytest.mark.real_data
def test_real_fashion_mnist_quick(real_data_dir, tmp_path, capsys):
    metrics = run_lesson_main(STEM, tmp_path, "--quick", "--data-dir", str(real_data_dir))
    assert "stand-in" not in capsys.readouterr().out
    assert metrics["train_loss_history"][-1] < metrics["train_loss_history"][0]
    assert metrics["test_accuracy"] > 0.6  # 512 real images, 3 epochs
