"""Lesson 21: DDP in 2 real processes gives the weights of one process with twice the batch."""

from __future__ import annotations

import socket

import pytest
from conftest import load_lesson, one_line_error, run_lesson_cli, run_script

STEM = "21_distributed"


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


def test_two_processes_end_with_the_weights_of_one_process_with_twice_the_batch(quick_run):
    run = quick_run(STEM)
    metrics = run.metrics
    assert metrics["world_size"] == 2 and metrics["batch_per_rank"] == 32
    assert metrics["max_weight_difference"] <= 1e-5
    assert metrics["headline"] == "max_weight_difference"
    assert (run.out / "ddp_model.pt").is_file() and (run.out / "rank_losses.png").is_file()


def test_the_ranks_report_their_group_and_the_all_reduce(quick_run):
    run = quick_run(STEM)
    reports = run.globals["reports"]
    assert [report["rank"] for report in reports] == [0, 1]
    assert len({report["pid"] for report in reports}) == 2, "two real processes"
    assert {report["backend"] for report in reports} == {"gloo"}
    assert reports[0]["all_reduce"] == {
        "contributed": [1.0, 10.0],
        "sum": [3.0, 30.0],
        "mean": [1.5, 15.0],
    }
    assert reports[1]["all_reduce"]["sum"] == [3.0, 30.0]
    assert "rank 1 contributed [2.0, 20.0] -> all_reduce(SUM) -> [3.0, 30.0]" in run.printed


def test_each_rank_trains_on_its_own_shard_and_its_loss_falls(quick_run):
    reports = quick_run(STEM).globals["reports"]
    for report in reports:
        losses = report["losses"]
        assert len(losses) == 1024 // 64 * 2, "1,024 images, 2 ranks x 32, 2 epochs"
        assert sum(losses[-8:]) / 8 < sum(losses[:8]) / 8 - 0.03
    assert reports[0]["losses"] != reports[1]["losses"], "different shards, different losses"


@pytest.mark.parametrize("world", [2, 3])
def test_the_shards_cover_the_data_once_and_reshuffle_each_epoch(lesson, world):
    epoch0, epoch1 = (lesson.shards(12, world, epoch, seed=0) for epoch in (0, 1))
    assert sorted(i for shard in epoch0 for i in shard) == list(range(12))
    assert all(len(shard) == 12 // world for shard in epoch0)
    assert epoch0 != epoch1, "set_epoch changes the order"
    assert epoch0 == lesson.shards(12, world, 0, seed=0), "the same on every rank"
    assert lesson.shards(12, world, 0, seed=1) != epoch0


def test_a_crashed_rank_is_one_line_not_a_hang(tmp_path):
    result = run_lesson_cli(STEM, "--quick", "--out", str(tmp_path), "--crash-rank", "1")
    error = one_line_error(result)
    assert "rank 1 of 2 failed" in error and "told to crash" in error, error


def test_a_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_lesson_cli(STEM, "--quick", "--out", str(tmp_path), "--port", port)
    assert one_line_error(result) == (
        f"error: port {port} is in use: pick another --port, or 0 for any free one"
    )


@pytest.mark.real_data
def test_data_parallel_training_on_the_real_images(real_data_dir, tmp_path):
    run = run_script(STEM, tmp_path, "--quick", "--data-dir", str(real_data_dir))
    assert "stand-in" not in run.printed
    assert run.metrics["max_weight_difference"] <= 1e-5
    assert run.metrics["test_accuracy"] > 0.5, "32 steps on real FashionMNIST learn something"
