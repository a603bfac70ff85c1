"""Lesson 04: every reference value of CURRICULUM.md §04 is printed and reproduced."""

from __future__ import annotations

import io
import sys

import pytest
from conftest import run_lesson_main

REFERENCE = {
    "e at a = b = 1": 9.0,
    "de/da by hand": 3.0,
    "de/da from autograd": 3.0,
    "de/db by hand (two paths add up)": 6.0,
    "de/db from autograd": 6.0,
    "x = [[1, 0], [-1, 1]], z = sum(x^2): x.grad = 2x": [[2.0, 0.0], [-2.0, 2.0]],
    "logistic model: w.grad.shape": [5, 3],
    "logistic model: b.grad.shape": [3],
    "(x @ w).requires_grad": True,
    "(x @ w).requires_grad inside torch.no_grad()": False,
    "x.detach().requires_grad": False,
    "x after detached[0] = 100 (shared storage)": [100.0, 2.0, 3.0],
    "x = [1, 2, 3.5], y = x^2, y.sum().backward(): x.grad = 2x": [2.0, 4.0, 7.0],
    "t = y.detach() + x^3: x.grad = 3x^2 (not 2x + 3x^2)": [3.0, 12.0, 36.75],
    "first backward: [diagonal], [elsewhere]": [[4.0], [2.0]],
    "second backward (accumulated)": [[8.0], [4.0]],
    "after inp.grad.zero_() and backward": [[4.0], [2.0]],
    "the error says 'grad can be implicitly created only for scalar outputs'": True,
    "fix 1: y.backward(tensor([1., 2.])): x.grad": [2.0, 8.0],
    "fix 2: (x^2).sum().backward(): x.grad": [2.0, 4.0],
    "...a second backward without zeroing doubles the gradient": True,
    "after optimizer.zero_grad() the gradient is cleared": True,
    "the optimizer holds the model's own parameter tensors": True,
}


@pytest.fixture(scope="module")
def lesson_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("lesson04")
    capture = pytest.MonkeyPatch()
    buffer = io.StringIO()
    capture.setattr(sys, "stdout", buffer)
    try:
        metrics = run_lesson_main("04_autograd", tmp_path)
    finally:
        capture.undo()
    return metrics, buffer.getvalue()


@pytest.mark.parametrize(("label", "expected"), REFERENCE.items())
def test_reference_value(lesson_run, label, expected):
    metrics, printed = lesson_run
    assert metrics["values"][label] == expected
    line = next(line for line in printed.splitlines() if line.startswith(f"  {label}: "))
    assert line.endswith(" ok"), line


def test_every_check_is_asserted_here(lesson_run):
    metrics, printed = lesson_run
    assert set(metrics["values"]) == set(REFERENCE)
    assert metrics["all_match"] is True
    assert metrics["reference_values"] == f"{len(REFERENCE)}/{len(REFERENCE)}"
    assert "MISMATCH" not in printed


def test_the_non_scalar_error_is_shown_not_raised(lesson_run):
    _, printed = lesson_run
    line = next(line for line in printed.splitlines() if "y.backward() raises RuntimeError" in line)
    assert line.endswith("grad can be implicitly created only for scalar outputs")


def test_sections_are_all_taught(lesson_run):
    _, printed = lesson_run
    for heading in ("chain rule", "requires_grad", "tracking off", "detach() inside a graph",
                    "Vector-Jacobian", "non-scalar", "zero_grad"):  # fmt: skip
        assert heading in printed
    assert "[[4.0, 2.0, 2.0, 2.0, 2.0], [2.0, 4.0, 2.0, 2.0, 2.0]," in printed
