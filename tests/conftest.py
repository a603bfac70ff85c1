"""Shared test helpers: import a lesson, run it as a script or as a notebook, find the real data.

A lesson is tested three ways (see LESSON_SHAPE.md): imported (nothing runs), run as a script in
this process by `runpy` (its globals come back: `metrics`, `model`, `history`), and executed as
a notebook by nbclient in a fresh kernel.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import runpy
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
LESSONS_DIR = REPO_ROOT / "lessons"
for folder in (LESSONS_DIR, REPO_ROOT):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

# Tests never download: whatever is not under the data root comes from the stand-ins.
os.environ.setdefault("LESSONS_OFFLINE", "1")
# Nothing a lesson prints should depend on the environment a developer happens to have set.
for name in ("LESSONS_QUICK", "LESSONS_THREADS", "LESSONS_DEVICE", "LESSONS_OUT_ROOT"):
    os.environ.pop(name, None)


def lesson_paths() -> list[Path]:
    """Every lesson file, in order."""
    return sorted(LESSONS_DIR.glob("[0-9][0-9]_*.py"))


def load_lesson(stem: str):
    """Import `lessons/<stem>.py` as a module: its definitions, none of its guarded blocks."""
    module_name = f"lesson_{stem}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, LESSONS_DIR / f"{stem}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class ScriptRun:
    """What a lesson run as a script left behind."""

    globals: dict  # the lesson's top-level variables: metrics, model, history, ...
    printed: str  # everything it printed
    out: Path  # its --out folder

    @property
    def metrics(self) -> dict:
        """metrics.json as written."""
        return json.loads((self.out / "metrics.json").read_text(encoding="utf-8"))

    def line(self, start: str) -> str:
        """The first printed line that starts with `start`."""
        lines = [line for line in self.printed.splitlines() if line.startswith(start)]
        assert lines, f"no printed line starts with {start!r}"
        return lines[0]


def run_script(stem: str, out: Path, *flags: str, env: dict | None = None) -> ScriptRun:
    """`python lessons/<stem>.py --device cpu --out OUT FLAGS`, run in this process by runpy.

    `env` sets (or, with None values, removes) environment variables for the run. Whatever
    the lesson changes in the process (the exception hook, torch's thread count, open figures)
    is put back afterwards.
    """
    import matplotlib.pyplot as plt
    import torch

    from common import data

    path = LESSONS_DIR / f"{stem}.py"
    argv = [str(path), "--device", "cpu", "--out", str(out), *flags]
    buffer = io.StringIO()
    saved = sys.argv, sys.excepthook, torch.get_num_threads()
    data._announced.clear()  # each run announces (and records) its own stand-ins
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(buffer):
        for name, value in (env or {}).items():
            if value is None:
                patch.delenv(name, raising=False)
            else:
                patch.setenv(name, value)
        sys.argv = argv
        try:
            variables = runpy.run_path(str(path), run_name="__main__")
        finally:
            sys.argv, sys.excepthook = saved[0], saved[1]
            torch.set_num_threads(saved[2])
            plt.close("all")
    return ScriptRun(variables, buffer.getvalue(), out)


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """`quick_run(stem)`: the lesson's `--quick` run on the stand-ins, made once per session.

    The data root is empty, so every dataset comes from its deterministic stand-in and the run
    prints the same wherever the tests run; the real data is the `real_data` tests' business.
    """
    runs: dict[str, ScriptRun] = {}
    empty = tmp_path_factory.mktemp("empty-data-root")

    def run(stem: str) -> ScriptRun:
        if stem not in runs:
            out = tmp_path_factory.mktemp(f"quick-{stem}")
            stand_ins = {"LESSONS_OFFLINE": "1", "LESSONS_REQUIRE_REAL_DATA": None}
            runs[stem] = run_script(stem, out, "--quick", "--data-dir", str(empty), env=stand_ins)
        return runs[stem]

    return run


def run_notebook(stem: str, out_root: Path, timeout: float = 300):
    """The lesson converted by jupytext and executed by nbclient in `lessons/`, as `--quick`.

    Raises nbclient's CellExecutionError if a cell fails. Returns the executed notebook.
    """
    import run_lesson

    notebook = run_lesson.lesson_notebook(LESSONS_DIR / f"{stem}.py")
    env = {
        **os.environ,
        "LESSONS_QUICK": "1",
        "LESSONS_DEVICE": "cpu",
        "LESSONS_OFFLINE": "1",
        "LESSONS_OUT_ROOT": str(out_root),
    }
    env.pop("LESSONS_REQUIRE_REAL_DATA", None)
    return run_lesson.execute_notebook(notebook, LESSONS_DIR, env, timeout=timeout)


def run_lesson_cli(stem: str, *flags: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python lessons/<stem>.py --device cpu FLAGS` as a student would (offline)."""
    return subprocess.run(
        [sys.executable, str(LESSONS_DIR / f"{stem}.py"), "--device", "cpu", *flags],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "LESSONS_OFFLINE": "1", "MPLBACKEND": "Agg"},
        encoding="utf-8",
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
def one_thread():
    """Train tiny models on one CPU thread, as lessons with `threads=1` do (more threads only add
    overhead there, and much more on a busy CPU)."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


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
