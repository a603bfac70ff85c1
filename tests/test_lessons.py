"""Smoke-test every lesson: import without side effects, then `main(["--quick", ...])` on the CPU.

New lessons are picked up automatically from `lessons/NN_*.py`.
"""

from __future__ import annotations

import json
import time

import pytest
from conftest import LESSONS_DIR, lesson_paths, load_lesson

import run_lesson

LESSONS = [path.stem for path in lesson_paths()]


def test_there_are_lessons():
    assert "01_tensors" in LESSONS


@pytest.mark.parametrize("stem", LESSONS)
def test_importing_a_lesson_has_no_side_effects(stem, capsys):
    module = load_lesson(stem)
    assert capsys.readouterr().out == ""
    assert callable(module.main)
    assert module.__doc__ and "Time:" in module.__doc__, "docstring needs a 'Time:' line"


@pytest.mark.parametrize("stem", LESSONS)
def test_the_runner_lists_typical_durations(stem):
    lesson = run_lesson.read_lesson(LESSONS_DIR / f"{stem}.py")
    assert lesson.title and lesson.summary, "first docstring line: 'Title: what you learn'"
    assert lesson.quick_time and lesson.full_time, "'Time:' needs '--quick ~N s, full ~N s'"


@pytest.mark.parametrize("stem", LESSONS)
def test_quick_run(stem, tmp_path):
    module = load_lesson(stem)
    started = time.monotonic()
    metrics = module.main(["--quick", "--device", "cpu", "--out", str(tmp_path)])
    seconds = time.monotonic() - started
    assert isinstance(metrics, dict) and metrics

    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["headline"] in saved, "metrics.json must name its headline metric"

    histories = {key: value for key, value in metrics.items() if key.endswith("loss_history")}
    for key, history in histories.items():
        assert len(history) >= 2, f"{key} needs at least two points"
        assert history[-1] < history[0], f"{key} did not decrease: {history[0]} -> {history[-1]}"
    # --quick is meant to take seconds; a generous bound catches a lesson that ignores it.
    assert seconds < 60, f"--quick took {seconds:.0f} s"
