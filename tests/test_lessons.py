"""Every lesson, the same checks: the lesson shape, the script run, the notebook run.

New lessons are picked up automatically from `lessons/NN_*.py`. Each lesson's own test file
checks its reference values and behaviour; this file checks what all lessons share.
"""

from __future__ import annotations

import ast
import json
import re

import pytest
from conftest import LESSONS_DIR, lesson_paths, load_lesson, run_notebook

import run_lesson

LESSONS = [path.stem for path in lesson_paths()]
GUARD = run_lesson.GUARD
# What LESSON_SHAPE.md keeps out of every lesson, and the speed plumbing that only the
# performance lesson shows (there it is the subject).
FORBIDDEN = re.compile(r"def main\(|__file__|ReferenceValues|CURRICULUM|\(reference ")
SPEED_PLUMBING = re.compile(r"autocast|GradScaler|non_blocking|pin_memory|synchronize\(")
PERFORMANCE_LESSON = "20_performance"


def source(stem: str) -> str:
    return (LESSONS_DIR / f"{stem}.py").read_text(encoding="utf-8")


def test_there_are_lessons():
    assert LESSONS[:3] == ["01_tensors", "02_data_as_tensors", "03_datasets_dataloaders"]


@pytest.mark.parametrize("stem", LESSONS)
def test_importing_a_lesson_runs_nothing(stem, capsys):
    module = load_lesson(stem)
    assert capsys.readouterr().out == ""
    assert not hasattr(module, "args") and not hasattr(module, "metrics")
    assert module.__doc__ and "Time:" in module.__doc__, "docstring needs a 'Time:' line"


@pytest.mark.parametrize("stem", LESSONS)
def test_the_runner_lists_typical_durations(stem):
    lesson = run_lesson.read_lesson(LESSONS_DIR / f"{stem}.py")
    assert lesson.title and lesson.summary, "first docstring line: 'Title: what you learn'"
    assert lesson.quick_time != "?" and lesson.full_time != "?", "'Time: --quick ~N s, full ~N s'"


@pytest.mark.parametrize("stem", LESSONS)
def test_the_lesson_has_the_lesson_shape(stem):
    text = source(stem)
    patterns = [FORBIDDEN] + [SPEED_PLUMBING] * (stem != PERFORMANCE_LESSON)
    found = sorted({match.group(0) for pattern in patterns for match in pattern.finditer(text)})
    assert not found, f"not in a lesson: {found}"
    assert f'name="{stem}"' in text, "lesson_args(..., name=...) names the lesson literally"
    assert text.count("# %% [markdown]") >= 3, "each section opens with a markdown cell"
    lines = text.count("\n")
    assert 120 <= lines <= 380, f"{lines} lines; a lesson is about 150-350"
    # Every top-level statement is a definition, an import, a constant or a guarded block.
    for node in ast.parse(text).body:
        if isinstance(node, ast.If):
            assert ast.unparse(node.test) == "__name__ == '__main__'", ast.unparse(node.test)
        elif isinstance(node, ast.Expr | ast.Assign | ast.AnnAssign):
            value = node.value
            assert not isinstance(value, ast.Call), f"a call outside a guard: {ast.unparse(node)}"


@pytest.mark.parametrize("stem", LESSONS)
def test_the_script_run(stem, quick_run):
    """`python lessons/NN.py --quick`: it writes metrics.json and its losses go down."""
    run = quick_run(stem)
    saved = run.metrics
    assert saved["headline"] in saved, "metrics.json names its headline metric"
    metrics = run.globals["metrics"]
    assert {key: saved[key] for key in metrics} == json.loads(json.dumps(metrics, default=str))
    histories = {key: value for key, value in saved.items() if key.endswith("loss_history")}
    for key, history in histories.items():
        assert len(history) >= 2, f"{key} needs at least two points"
        assert history[-1] < history[0], f"{key} did not decrease: {history[0]} -> {history[-1]}"
    assert "Traceback" not in run.printed


@pytest.mark.notebook
@pytest.mark.parametrize("stem", LESSONS)
def test_the_notebook_run(stem, tmp_path):
    """jupytext + nbclient with LESSONS_QUICK=1: no cell fails, every guarded cell shows its
    results, and every figure the lesson saves also appears inline under its cell."""
    notebook = run_notebook(stem, tmp_path)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    silent = [cell.source[:60] for cell in code_cells if GUARD in cell.source and not cell.outputs]
    assert not silent, f"guarded cells without output: {silent}"
    outputs = [output for cell in code_cells for output in cell.outputs]
    printed = "".join(
        output.get("text", "") for output in outputs if output.output_type == "stream"
    )
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert printed.count("saved figure ") == len(images), "each saved figure is shown inline"
    assert (tmp_path / stem / "metrics.json").is_file()
