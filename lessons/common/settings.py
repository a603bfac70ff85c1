"""What the rest of `common` and the runner share: environment variables, folders, flag types,
atomic writes. The leaf of `common`: it imports no other `common` module and no torch, so no
import cycle can form and `run_lesson.py --list` starts instantly."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

DATA_DIR_ENV = "LESSONS_DATA_DIR"  # the data root
OUT_ROOT_ENV = "LESSONS_OUT_ROOT"  # where outputs/<lesson>/ folders go (default <repo>/outputs)
OFFLINE_ENV = "LESSONS_OFFLINE"  # 1: never download
DEVICE_ENV = "LESSONS_DEVICE"  # the default --device
QUICK_ENV = "LESSONS_QUICK"  # 1: --quick, also where there is no command line (a notebook)
ARGS_ENV = "LESSONS_ARGS"  # a notebook's command line, as the runner's --notebook passes it
THREADS_ENV = "LESSONS_THREADS"  # the default --threads
REQUIRE_REAL_ENV = "LESSONS_REQUIRE_REAL_DATA"  # 1: a missing dataset is an error, no stand-in
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"


def env_flag(name: str) -> bool:
    """True when the environment variable `name` is 1, true or yes."""
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


def env_path(name: str, default: Path) -> Path:
    """The folder the environment variable `name` names, else `default`."""
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser() if value else default


def default_data_dir() -> Path:  # $LESSONS_DATA_DIR, else <repo>/data
    return env_path(DATA_DIR_ENV, REPO_ROOT / "data")


def outputs_root() -> Path:  # $LESSONS_OUT_ROOT, else <repo>/outputs
    return env_path(OUT_ROOT_ENV, REPO_ROOT / "outputs")


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (`prog: error: ...`), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _number(text: str, kind: type, what: str, ok, rule: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"{rule}, got {text.strip()}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return _number(text, int, "a whole number", lambda value: value >= 1, "must be at least 1")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _number(text, int, "a whole number", lambda value: value >= 0, "must be 0 or more")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (learning rates, weight decay, timeouts)."""
    ok = lambda value: 0 < value < float("inf")  # noqa: E731
    return _number(text, float, "a number", ok, "must be a positive number")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` and move it onto `path` in one step on success; on
    any error the temporary file is removed and `path` keeps its previous content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: its files are private (0600); this one gets the usual permissions.
    temp_path = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield temp_path
        os.replace(temp_path, path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise
