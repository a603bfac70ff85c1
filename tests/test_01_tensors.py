"""Lesson 01: every reference value of CURRICULUM.md §01 is printed and reproduced."""

from __future__ import annotations

import pytest
from conftest import run_lesson_main

REFERENCE = {
    "cat([2,1,3], [2,2,3], [2,3,3], dim=1).shape": [2, 6, 3],
    "zeros(1, 2, 3).squeeze().shape": [2, 3],
    "zeros(4).unsqueeze(0).shape": [1, 4],
    "zeros(4).unsqueeze(1).shape": [4, 1],
    "3x3 stride": (3, 1),
    "row 1 storage offset": 3,
    "element [1][1] storage offset": 4,
    "t[0].stride()": (1,),
    "(3, 2) matrix stride": (2, 1),
    "its transpose's stride": (1, 2),
    "transpose[1, 2] sits at storage offset": 5,
    "t[:, 1].shape (one dimension fewer)": [3],
    "t[:, 1:2].shape (a slice keeps it)": [3, 1],
    "after array[0] = 100, torch.from_numpy(array)": [100.0, 2.0, 3.0],
    "after array[0] = 100, torch.tensor(array)": [1.0, 2.0, 3.0],
    "transpose is_contiguous()": False,
    "contiguous() made new storage": True,
    "points[0, 0] after detached[0, 0] = -1": -1.0,
    "type of a.sum().item()": "float",
}


@pytest.fixture(scope="module")
def lesson_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("lesson01")
    capture = pytest.MonkeyPatch()
    import io
    import sys

    buffer = io.StringIO()
    capture.setattr(sys, "stdout", buffer)
    try:
        metrics = run_lesson_main("01_tensors", tmp_path)
    finally:
        capture.undo()
    return metrics, buffer.getvalue()


@pytest.mark.parametrize(("label", "expected"), REFERENCE.items())
def test_reference_value(lesson_run, label, expected):
    metrics, printed = lesson_run
    assert metrics["values"][label] == expected
    assert f"  {label}: " in printed
    line = next(line for line in printed.splitlines() if line.startswith(f"  {label}: "))
    assert line.endswith(" ok"), line


def test_everything_matches(lesson_run):
    metrics, printed = lesson_run
    assert metrics["all_match"] is True
    assert metrics["reference_values"] == f"{len(metrics['values'])}/{len(metrics['values'])}"
    assert "MISMATCH" not in printed


def test_sections_are_all_taught(lesson_run):
    _, printed = lesson_run
    for heading in ("Building tensors", "Indexing", "Arithmetic", "Shape operations",
                    "memory", "Naming dimensions", "Devices", "Saving and loading"):  # fmt: skip
        assert heading in printed
    assert "Expected all tensors to be on the same device" in printed
    assert "mean over height and width -> (batch, channel): [2, 3]" in printed
