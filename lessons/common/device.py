"""Pick the device a lesson runs on, seed every random generator, describe the setup.

`auto` asks `torch.accelerator` (torch >= 2.6) which accelerator this build can use, older torch
`torch.cuda` and `torch.backends.mps`; `LESSONS_DEVICE` sets the default. A device this machine
does not have raises `DeviceError`, naming the devices it does have.
"""

from __future__ import annotations

import os
import platform
import random

import numpy as np
import torch

from common import LessonError
from common.settings import DEVICE_CHOICES, DEVICE_ENV


class DeviceError(LessonError, ValueError):
    """The requested device does not exist on this machine (or is not a device name)."""


def current_accelerator() -> str | None:
    """The accelerator type this torch build can use right now ('cuda', 'mps', ...), or None."""
    accelerator_api = getattr(torch, "accelerator", None)  # added in torch 2.6
    if accelerator_api is not None:
        return (
            accelerator_api.current_accelerator().type if accelerator_api.is_available() else None
        )
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else None


def available_devices() -> list[str]:
    """Every device name `pick_device` accepts here, e.g. ['cpu', 'cuda:0', 'cuda:1']."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        names.append("mps")
    accelerator = current_accelerator()
    if accelerator not in (None, "cuda", "mps"):
        names.append(accelerator)
    return names


def pick_device(name: str | None = None) -> torch.device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:1' | 'mps' as a usable `torch.device` (None: the
    `LESSONS_DEVICE` environment variable, else 'auto')."""
    name = (name or os.environ.get(DEVICE_ENV) or "auto").strip().lower()
    if name == "auto":
        return torch.device(current_accelerator() or "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise DeviceError(f"'{name}' is not a device name (choose from {DEVICE_CHOICES})") from None
    available = available_devices()
    types = {known.split(":")[0] for known in available}
    if str(device) not in available and not (device.index is None and device.type in types):
        raise DeviceError(
            f"device '{name}' is not available on this machine (available: {', '.join(available)})"
        )
    return device


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (torch.manual_seed covers accelerators)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def describe(device: torch.device) -> str:
    """One line saying where the lesson runs: device, torch and Python versions."""
    if device.type == "cuda":
        where = f"cuda ({torch.cuda.get_device_name(device)})"
    elif device.type == "cpu":
        threads = torch.get_num_threads()
        where = f"cpu ({threads} thread{'s' if threads != 1 else ''})"
    else:
        where = str(device)
    return f"device {where} | torch {torch.__version__} | python {platform.python_version()}"
