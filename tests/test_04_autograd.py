"""Lesson 04: the autograd reference values, returned by the section functions and printed."""

from __future__ import annotations

from itertools import pairwise

import pytest
import torch
from conftest import load_lesson, run_lesson_cli

STEM = "04_autograd"
CHAIN_RULE = {
    "e at a = b = 1": 9.0,
    "de/da by hand": 3.0,
    "de/da from autograd": 3.0,
    "de/db by hand (two paths add up)": 6.0,
    "de/db from autograd": 6.0,
}
GRADIENTS = {
    "x = [[1, 0], [-1, 1]], z = sum(x^2): x.grad = 2x": [[2.0, 0.0], [-2.0, 2.0]],
    "logistic model: w.grad.shape": [5, 3],
    "logistic model: b.grad.shape": [3],
}
NO_TRACKING = {
    "(x @ w).requires_grad": True,
    "(x @ w).requires_grad inside torch.no_grad()": False,
    "x.detach().requires_grad": False,
    "x after detached[0] = 100 (shared storage)": [100.0, 2.0, 3.0],
}
DETACH = {
    "x = [1, 2, 3.5], y = x^2, y.sum().backward(): x.grad = 2x": [2.0, 4.0, 7.0],
    "t = y.detach() + x^3: x.grad = 3x^2 (not 2x + 3x^2)": [3.0, 12.0, 36.75],
}
VECTOR_JACOBIAN = {
    "first backward: [diagonal], [elsewhere]": [[4.0], [2.0]],
    "second backward (accumulated)": [[8.0], [4.0]],
    "after inp.grad.zero_() and backward": [[4.0], [2.0]],
}
NON_SCALAR = {
    "the error says 'grad can be implicitly created only for scalar outputs'": True,
    "fix 1: y.backward(tensor([1., 2.])): x.grad": [2.0, 8.0],
    "fix 2: (x^2).sum().backward(): x.grad": [2.0, 4.0],
}
IN_PARAMETERS = {
    "...a second backward without zeroing doubles the gradient": True,
    "after optimizer.zero_grad() the gradient is cleared": True,
    "the optimizer holds the model's own parameter tensors": True,
}
SECTIONS = {
    "chain_rule": CHAIN_RULE,
    "gradients": GRADIENTS,
    "no_tracking": NO_TRACKING,
    "detach_in_graph": DETACH,
    "vector_jacobian": VECTOR_JACOBIAN,
    "non_scalar_backward": NON_SCALAR,
    "gradients_in_parameters": IN_PARAMETERS,
}
REFERENCE = {label: value for section in SECTIONS.values() for label, value in section.items()}


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


def part(values: dict, expected: dict) -> dict:
    """The entries of `values` that `expected` names."""
    return {label: values[label] for label in expected}


def test_there_are_23_reference_values():
    assert len(REFERENCE) == 23


@pytest.mark.parametrize("section", SECTIONS)
def test_each_section_returns_its_reference_values(lesson, section):
    assert part(getattr(lesson, section)(), SECTIONS[section]) == SECTIONS[section]


def test_the_other_values_of_the_sections(lesson):
    chain = lesson.chain_rule()
    assert chain["a.is_leaf, c.is_leaf"] == (True, False)
    assert chain["e.grad_fn (the last node of the graph)"] == "MulBackward0"
    gradients = lesson.gradients()
    assert gradients["inputs.grad (the data asked for none)"] is None
    assert lesson.no_tracking()["same memory (data_ptr)"] is True
    grad = lesson.vector_jacobian()["first backward: inp.grad = 2 (inp + 1)"]
    assert grad == (2 * (torch.eye(4, 5) + 1)).tolist()
    in_parameters = lesson.gradients_in_parameters()
    assert in_parameters["before any backward: model.weight.grad"] is None
    assert in_parameters["two half-batches, loss / 2 each, add up to the full batch's gradient"]


def test_diagonal_and_rest(lesson):
    grad = torch.tensor([[5.0, 1.0, 1.0], [2.0, 5.0, 1.0]])
    assert lesson.diagonal_and_rest(grad) == [[5.0], [1.0, 2.0]]


def test_zero_grad_makes_the_training_loop_converge(lesson):
    losses = lesson.fit_line()
    assert len(losses) == 20
    assert all(later < earlier for earlier, later in pairwise(losses))
    assert losses[-1] < 0.01 * losses[0]
    forgetful = lesson.fit_line(zero_grad=False)
    assert forgetful[:2] == pytest.approx(losses[:2])  # the same until gradients pile up
    assert min(forgetful[-5:]) > 0.05 and max(forgetful) > 0.5 * forgetful[0]


def test_every_reference_value_is_printed(quick_run):
    run = quick_run(STEM)
    for label, value in REFERENCE.items():
        assert run.line(f"{label}: ") == f"{label}: {value}"
    raised = run.line("y = x^2; y.backward() raises RuntimeError: ")
    assert raised.endswith("grad can be implicitly created only for scalar outputs")
    assert "[[4.0, 2.0, 2.0, 2.0, 2.0], [2.0, 4.0, 2.0, 2.0, 2.0]," in run.printed


def test_the_quick_run_keeps_its_results(quick_run):
    run = quick_run(STEM)
    metrics, sections = run.metrics, run.globals["sections"]
    assert list(sections) == list(SECTIONS)
    for name, expected in SECTIONS.items():
        assert part(sections[name], expected) == expected
    assert metrics["headline"] == "values_shown"
    assert metrics["values_shown"] == sum(len(values) for values in sections.values()) >= 23
    history = run.globals["loss_history"]
    assert metrics["loss_history"] == history and history[-1] < 0.01 * history[0]
    assert metrics["losses_without_zero_grad"][-1] > 10 * history[-1]
    assert run.line("losses with zero_grad(): [2.511, 1.449,")


def test_a_bad_flag_value_is_an_argparse_error(tmp_path):
    result = run_lesson_cli(STEM, "--seed", "-1", "--out", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "argument --seed" in result.stderr
