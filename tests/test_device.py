"""pick_device across an availability matrix (faked by monkeypatching torch), seeding, describe."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from common.device import DeviceError, available_devices, describe, pick_device, seed_everything


@pytest.fixture
def machine(monkeypatch):
    """Pretend this machine has the given accelerators: machine(cuda=2), machine(mps=True)."""

    def configure(cuda: int = 0, mps: bool = False, has_accelerator_api: bool = True):
        monkeypatch.delenv("LESSONS_DEVICE", raising=False)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
        current = "cuda" if cuda else ("mps" if mps else None)
        if not has_accelerator_api:  # torch before 2.6
            monkeypatch.delattr(torch, "accelerator", raising=False)
        elif hasattr(torch, "accelerator"):
            monkeypatch.setattr(torch.accelerator, "is_available", lambda: current is not None)
            monkeypatch.setattr(
                torch.accelerator, "current_accelerator", lambda: torch.device(current)
            )

    return configure


@pytest.mark.parametrize("has_accelerator_api", [True, False])
def test_cpu_only_machine(machine, has_accelerator_api):
    machine(has_accelerator_api=has_accelerator_api)
    assert pick_device("auto") == torch.device("cpu")
    assert pick_device("cpu") == torch.device("cpu")
    assert available_devices() == ["cpu"]
    for name in ("cuda", "cuda:0", "mps"):
        with pytest.raises(DeviceError, match=r"not available on this machine \(available: cpu\)"):
            pick_device(name)


@pytest.mark.parametrize("has_accelerator_api", [True, False])
def test_cuda_machine(machine, has_accelerator_api):
    machine(cuda=2, has_accelerator_api=has_accelerator_api)
    assert pick_device("auto") == torch.device("cuda")
    assert pick_device("cuda") == torch.device("cuda")
    assert pick_device("cuda:1") == torch.device("cuda:1")
    assert available_devices() == ["cpu", "cuda:0", "cuda:1"]
    with pytest.raises(DeviceError, match=r"cuda:2.*available: cpu, cuda:0, cuda:1"):
        pick_device("cuda:2")
    with pytest.raises(DeviceError, match="'mps' is not available"):
        pick_device("mps")


@pytest.mark.parametrize("has_accelerator_api", [True, False])
def test_apple_machine(machine, has_accelerator_api):
    machine(mps=True, has_accelerator_api=has_accelerator_api)
    assert pick_device("auto") == torch.device("mps")
    assert pick_device("MPS") == torch.device("mps")
    assert available_devices() == ["cpu", "mps"]
    with pytest.raises(DeviceError, match="'cuda' is not available"):
        pick_device("cuda")


def test_environment_variable_is_the_default(machine, monkeypatch):
    machine(cuda=1)
    monkeypatch.setenv("LESSONS_DEVICE", "cpu")
    assert pick_device() == torch.device("cpu")
    assert pick_device("cuda") == torch.device("cuda")  # an explicit choice wins
    monkeypatch.delenv("LESSONS_DEVICE")
    assert pick_device() == torch.device("cuda")


@pytest.mark.parametrize("name", ["banana", "cuda:x", "gpu", ""])
def test_nonsense_names_are_rejected_clearly(machine, name):
    machine()
    if name == "":
        assert pick_device(name) == torch.device("cpu")  # empty means the default, auto
        return
    with pytest.raises(DeviceError, match="is not a device name"):
        pick_device(name)


def test_seed_everything_makes_every_generator_repeat():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3).tolist()

    seed_everything(7)
    first = draw()
    seed_everything(7)
    assert draw() == first
    seed_everything(8)
    assert draw() != first


def test_describe_names_device_and_versions():
    line = describe(torch.device("cpu"))
    assert line.startswith("device cpu (")
    assert f"torch {torch.__version__}" in line
    assert "python 3." in line
    assert "\n" not in line
