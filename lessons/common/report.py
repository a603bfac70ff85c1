"""Where a lesson's results go: `save_figure` (a PNG, also shown inline in a notebook),
`write_metrics` (metrics.json), `progress` (a bar on a terminal). Every write is atomic: a
temporary file replaces the target in one step, so an interrupted run leaves no half file."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

# No backend is forced: matplotlib draws off-screen by itself where there is no display, a
# Jupyter kernel selects its inline backend, and MPLBACKEND=Agg turns windows off anywhere.
import matplotlib
import matplotlib.pyplot as plt
from tqdm import tqdm

from common.data import stand_ins_used
from common.settings import atomic_path, outputs_root


def lesson_output_dir(lesson: str, out: str | os.PathLike | None = None) -> Path:
    """`out` if given, else `outputs/<lesson>/` (under `$LESSONS_OUT_ROOT`); created if missing."""
    directory = Path(out) if out else outputs_root() / lesson
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def in_notebook() -> bool:
    """True inside a Jupyter kernel (Jupyter, VS Code's interactive window, Colab)."""
    return "ipykernel" in sys.modules


def save_figure(fig: plt.Figure, path: str | os.PathLike) -> Path:
    """Save `fig` as a PNG at `path`, show it (inline in a notebook, in a window from a terminal
    with an interactive backend), then close it."""
    path = Path(path)
    with atomic_path(path) as temp_path:
        fig.savefig(temp_path, format="png", dpi=100, bbox_inches="tight")
    files_only = ("agg", "pdf", "svg", "ps", "cairo", "template")  # backends without windows
    window = sys.stdout.isatty() and matplotlib.get_backend().lower() not in files_only
    if in_notebook() or window:
        plt.show()
    plt.close(fig)
    print(f"saved figure {_shown(path)}")
    return path


def _shown(path: Path) -> str:
    """`path` relative to the working folder when it is inside it."""
    inside = path.resolve().is_relative_to(Path.cwd())
    return str(path.resolve().relative_to(Path.cwd())) if inside else str(path)


def _jsonable(value):
    """Tensors, NumPy values and paths as plain JSON values; inf and nan as strings."""
    if hasattr(value, "tolist"):  # torch.Tensor, numpy arrays and scalars
        value = value.tolist()
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if (isinstance(value, float) and not math.isfinite(value)) or isinstance(value, Path):
        return str(value)
    return value


def write_metrics(out_dir: str | os.PathLike, metrics: dict, headline: str | None = None) -> Path:
    """Write `metrics` to `<out_dir>/metrics.json`; `headline` names the key the runner shows.
    When a stand-in replaced real data, `"data": "stand-in"` and the stand-ins are recorded too,
    so nobody mistakes a stand-in's accuracy for a real one."""
    data = dict(metrics)
    if stand_ins_used():
        data.setdefault("data", "stand-in")
        data.setdefault("stand_ins", stand_ins_used())
    if headline is not None:
        if headline not in metrics:
            raise KeyError(f"headline metric {headline!r} is not among the metrics")
        data["headline"] = headline
    path = Path(out_dir) / "metrics.json"
    with atomic_path(path) as temp_path:
        temp_path.write_text(json.dumps(_jsonable(data), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {_shown(path)}")
    return path


def progress(iterable, desc: str = "", total: int | None = None, **kwargs):
    """A tqdm progress bar on a terminal (a widget in a notebook that has ipywidgets); silent
    when output goes to a file or a pipe, so logs hold the lesson's lines, not bar redraws."""
    if in_notebook() and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm as notebook_tqdm

        return notebook_tqdm(iterable, desc=desc, total=total, leave=False, **kwargs)
    quiet = in_notebook() or not sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, disable=quiet, leave=False, **kwargs)
