"""Lesson 01: the tensor reference values, returned by the section functions and printed."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from conftest import load_lesson, run_lesson_cli

STEM = "01_tensors"
CONSTRUCTION = {
    "after array[0] = 100, torch.tensor(array)": [1.0, 2.0, 3.0],
    "after array[0] = 100, torch.from_numpy(array)": [100.0, 2.0, 3.0],
}
INDEXING = {
    "t[:, 1].shape (one dimension fewer)": [3],
    "t[:, 1:2].shape (a slice keeps it)": [3, 1],
    "cat([2,1,3], [2,2,3], [2,3,3], dim=1).shape": [2, 6, 3],
    "stack three [2,3] on a new dim 0": [3, 2, 3],
}
ARITHMETIC = {"type of a.sum().item()": "float"}
SHAPES = {
    "zeros(1, 2, 3).squeeze().shape": [2, 3],
    "zeros(4).unsqueeze(0).shape": [1, 4],
    "zeros(4).unsqueeze(1).shape": [4, 1],
    "zeros(2, 3).transpose(0, 1).shape": [3, 2],
    "zeros(2, 3, 4).permute(2, 0, 1).shape": [4, 2, 3],
    "(W @ X + b).shape with W 3x2, X 2x5, b 3x1": [3, 5],
}
MEMORY = {
    "3x3 stride": (3, 1),
    "row 1 storage offset": 3,
    "element [1][1] storage offset": 4,
    "t[0].stride()": (1,),
    "(3, 2) matrix stride": (2, 1),
    "its transpose's stride": (1, 2),
    "transpose[1, 2] sits at storage offset": 5,
    "transpose shares the storage": True,
    "transpose is_contiguous()": False,
    "contiguous() stride": (3, 1),
    "contiguous() made new storage": True,
    "points[0, 0] after detached[0, 0] = -1": -1.0,
}
SERIALIZATION = {
    "round trip through a file object": [0.0, 1.0, 2.0, 3.0],
    "round trip through a path": [0.0, 1.0, 2.0, 3.0],
}
REFERENCE = {**CONSTRUCTION, **INDEXING, **ARITHMETIC, **SHAPES, **MEMORY, **SERIALIZATION}
SAME_DEVICE = "Expected all tensors to be on the same device"


@pytest.fixture(scope="module")
def lesson():
    return load_lesson(STEM)


def part(values: dict, expected: dict) -> dict:
    """The entries of `values` that `expected` names."""
    return {label: values[label] for label in expected}


def test_there_are_27_reference_values():
    assert len(REFERENCE) == 27


def test_construction_copies_or_shares(lesson):
    values = lesson.construction()
    assert part(values, CONSTRUCTION) == CONSTRUCTION
    assert values["linspace(0, 10, 5)"] == [0.0, 2.5, 5.0, 7.5, 10.0]
    assert values["zeros_like(int64 zeros, dtype=float32)"] == [0.0, 0.0]
    assert all(0 <= v < 1 for v in values["rand(2) in [0, 1)"])
    assert [values[f"rand(2, 3).{name}"] for name in ("shape", "dtype", "ndim")] == [
        [2, 3],
        "torch.float32",
        2,
    ]


def test_indexing_and_joining(lesson):
    values = lesson.indexing_and_joining()
    assert part(values, INDEXING) == INDEXING
    assert values["t[..., -1]"] == [3.0, 7.0, 11.0]
    assert [row[1] for row in values["after t[:, 1] = 0"]] == [0.0, 0.0, 0.0]


def test_arithmetic(lesson):
    values = lesson.arithmetic()
    assert part(values, ARITHMETIC) == ARITHMETIC
    assert values["a @ a.T"] == values["matmul(a, a.T, out=out), then out"] == [[5, 11], [11, 25]]
    assert values["sum / mean / std / norm"] == [10.0, 2.5, 1.291, 5.4772]
    assert values["b[0] after b.add(1)"] == [1.0, 2.0]  # out of place: b unchanged
    assert values["b[0] after b.add_(1)"] == [2.0, 3.0]  # in place


def test_shape_ops(lesson):
    values = lesson.shape_ops()
    assert part(values, SHAPES) == SHAPES
    assert values["[[1],[2]].expand(2, 3)"] == values["[[1],[2]].repeat(1, 3)"]
    assert 0 in values["its stride (0: no copy)"]


def test_memory_layout(lesson):
    assert part(lesson.memory(), MEMORY) == MEMORY


def test_named_dimensions_give_the_right_shapes(lesson):
    values = lesson.named_dimensions()
    assert values["permute by names (channel, batch, height, width)"] == [3, 2, 30, 30]
    assert values["mean over height and width -> (batch, channel)"] == [2, 3]
    assert values["max over width -> (batch, channel, height)"] == [2, 3, 30]
    if hasattr(torch.Tensor, "align_to"):
        assert values["align_to(channel, batch, height, width)"] == [3, 2, 30, 30]
    else:
        assert "no named-tensor prototype" in values["named tensors"]


def test_without_an_accelerator_mixing_devices_is_explained(lesson):
    values = lesson.devices(torch.device("cpu"))
    assert values["torch.ones(2).to(device).device"] == "cpu"
    assert values["on one, cpu_tensor + gpu_tensor raises"].startswith(SAME_DEVICE)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_mixing_devices_raises(lesson):
    values = lesson.devices(torch.device("cuda"))
    assert values["torch.ones(2).to(device).device"].startswith("cuda")
    assert SAME_DEVICE in values["mixing devices raises"]
    assert values["after moving both with .to(device)"] == [2.0, 2.0]


def test_serialization_round_trips(lesson, tmp_path):
    values = lesson.serialization(tmp_path)
    assert part(values, SERIALIZATION) == SERIALIZATION
    assert torch.load(tmp_path / "tensor.pt", weights_only=True).tolist() == [0, 1, 2, 3]
    if importlib.util.find_spec("h5py") is None:
        assert values["HDF5"].startswith("skipped: h5py is not installed")
    else:
        assert values["HDF5 round trip"] == [0.0, 1.0, 2.0, 3.0]


def test_every_reference_value_is_printed(quick_run):
    run = quick_run(STEM)
    for label, value in REFERENCE.items():
        assert run.line(f"{label}: ") == f"{label}: {value}"
    assert SAME_DEVICE in run.printed
    assert "HDF5" in run.printed  # the round trip or the line saying it is skipped


def test_the_quick_run_keeps_its_results(quick_run):
    run = quick_run(STEM)
    metrics, sections = run.metrics, run.globals["sections"]
    assert list(sections) == ["construction", "indexing_and_joining", "arithmetic", "shape_ops",
                              "memory", "named_dimensions", "devices", "serialization"]  # fmt: skip
    assert metrics["headline"] == "values_shown"
    assert metrics["values_shown"] == sum(len(values) for values in sections.values()) >= 60
    assert part(run.globals["layout"], MEMORY) == MEMORY
    assert metrics["memory"]["3x3 stride"] == [3, 1]  # JSON has lists, not tuples
    assert (run.out / "tensor.pt").is_file()
    assert run.line(f"{metrics['values_shown']} values shown in 8 sections")


def test_an_unavailable_device_is_an_argparse_error(tmp_path):
    result = run_lesson_cli(STEM, "--device", "cuda:7", "--out", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "device 'cuda:7' is not available" in result.stderr
