"""Shared test helpers: load a lesson by file name, locate the real data, isolate state."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
LESSONS_DIR = REPO_ROOT / "lessons"
if str(LESSONS_DIR) not in sys.path:
    sys.path.insert(0, str(LESSONS_DIR))

# Tests never download: whatever is not under the data root comes from the stand-ins.
os.environ.setdefault("LESSONS_OFFLINE", "1")


def lesson_paths() -> list[Path]:
    """Every lesson file, in order."""
    return sorted(LESSONS_DIR.glob("[0-9][0-9]_*.py"))


def load_lesson(stem: str):
    """Import `lessons/<stem>.py` (file names start with digits, so `import` cannot)."""
    module_name = f"lesson_{stem}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, LESSONS_DIR / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def run_lesson_main(stem: str, tmp_path: Path, *flags: str) -> dict:
    """Run a lesson's `main` in-process on the CPU, writing into `tmp_path`."""
    module = load_lesson(stem)
    return module.main(["--device", "cpu", "--out", str(tmp_path / stem), *flags])


def run_lesson_cli(stem: str, *flags: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python lessons/<stem>.py --device cpu FLAGS` as a student would (offline)."""
    return subprocess.run(
        [sys.executable, str(LESSONS_DIR / f"{stem}.py"), "--device", "cpu", *flags],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "LESSONS_OFFLINE": "1"},
    )


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The single `error: ...` line bad input must give: exit status 1, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(autouse=True)
def _fresh_announcements():
    """Each test sees the stand-in notice anew (it is printed once per process otherwise)."""
    from common import data

    data._announced.clear()
    yield
    data._announced.clear()


@pytest.fixture
def real_data_dir(monkeypatch) -> Path:
    """The real datasets' root ($LESSONS_DATA_DIR), with stand-ins forbidden.

    Skipped when the variable is unset; CI sets it and also sets
    LESSONS_REAL_DATA_TESTS_MUST_RUN=1, which turns that skip into a failure.
    """
    root = os.environ.get("LESSONS_DATA_DIR", "").strip()
    if not root:
        if os.environ.get("LESSONS_REAL_DATA_TESTS_MUST_RUN") == "1":
            pytest.fail("LESSONS_DATA_DIR is not set, but real-data tests must run here")
        pytest.skip("LESSONS_DATA_DIR is not set: no real data to test on")
    monkeypatch.setenv("LESSONS_REQUIRE_REAL_DATA", "1")
    return Path(root)
