"""Lesson 20: every measurement is taken or says why not; autocast follows float32; compile is
equal to eager."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest
import torch
from conftest import load_lesson, run_script

STEM = "20_performance"
MEASURED_ON_A_CPU = [
    "plain loop: per-sample transforms, DataLoader",
    "DataLoader, num_workers=2",
    "whole split as one tensor on the device",
    "batch 16, whole split tensor",
    "batch 256, whole split tensor",
    "channels_last, whole split tensor",
    "autocast bfloat16",
]


@pytest.fixture(scope="module")
def lesson():
    module = load_lesson(STEM)
    module.device = torch.device("cpu")  # what the lesson's first cell sets
    module.steps, module.warmup = 3, 1
    return module


def test_every_step_is_measured_or_says_why_not(quick_run):
    run = quick_run(STEM)
    results = run.globals["results"]
    for name in MEASURED_ON_A_CPU:
        assert results[name] > 0, name
    assert results["pinned host tensor, non_blocking copies"] == "not on this device"
    assert results["torch.compile"].startswith("skipped: left out of --quick")
    assert "1 CPU thread, whole split tensor" in results
    metrics = run.metrics
    assert metrics["speedups"]["plain loop: per-sample transforms, DataLoader"] == 1.0
    assert metrics["headline"] == "best_speedup" and metrics["best_speedup"] >= 1.0
    assert "not on this device" in run.printed and (run.out / "speedups.png").is_file()


def test_autocast_trains_like_float32(quick_run):
    curves = quick_run(STEM).globals["curves"]
    float32, bfloat16 = curves["float32"], curves["bfloat16"]
    assert len(float32) == len(bfloat16) == 10
    assert float32[0] == pytest.approx(bfloat16[0], abs=0.02), "same model, same first batch"
    assert float32[-1] < float32[0] and bfloat16[-1] < bfloat16[0]
    assert abs(float32[-1] - bfloat16[-1]) < 0.1


def test_the_timer_reports_images_per_second_from_the_median(lesson, monkeypatch):
    durations = iter([0.0, 10.0, 10.1, 20.0, 20.2, 30.0, 30.4])  # warm-up (not timed), 0.1-0.4 s
    clock = SimpleNamespace(perf_counter=lambda: next(durations))  # the lesson's clock only
    monkeypatch.setattr(lesson, "time", clock)
    batches = ((torch.zeros(50, 1), torch.zeros(50)) for _ in range(4))
    assert lesson.images_per_second(lambda X, y: None, batches, torch.device("cpu")) == (
        pytest.approx(50 / 0.2)
    )


def test_the_precision_matches_the_device(lesson):
    assert lesson.precision_for(torch.device("cpu")) == (torch.bfloat16, False)
    assert lesson.precision_for(torch.device("cuda")) == (torch.float16, True)
    assert lesson.precision_for(torch.device("meta")) is None


def test_a_missing_compiler_is_said_not_crashed(lesson, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "no C++ compiler found" in lesson.compiler_missing()


def test_tensor_batches_cover_the_split_each_pass(lesson):
    images, labels = torch.arange(10.0)[:, None], torch.arange(10)
    batches = lesson.tensor_batches(images, labels, batch_size=5)
    first_pass = torch.cat([next(batches)[1] for _ in range(2)])
    assert sorted(first_pass.tolist()) == list(range(10))
    X, y = next(batches)
    assert torch.equal(X[:, 0].long(), y), "images and labels stay paired"


@pytest.mark.real_data
def test_the_measurements_on_the_real_images(real_data_dir, tmp_path):
    run = run_script(STEM, tmp_path, "--quick", "--data-dir", str(real_data_dir))
    assert "stand-in" not in run.printed
    assert run.metrics["speedups"]["whole split as one tensor on the device"] > 0


def test_the_compiled_model_computes_what_the_eager_one_does(lesson, one_thread):
    if lesson.compiler_missing():  # e.g. Windows without Visual Studio: the lesson says so
        pytest.skip(f"torch.compile cannot run here: {lesson.compiler_missing()}")
    batch = torch.randn(8, 1, 28, 28)
    compiled, seconds, difference = lesson.compile_and_check(batch)
    assert seconds > 0 and difference < 1e-4
    assert compiled(batch).shape == (8, 10)
