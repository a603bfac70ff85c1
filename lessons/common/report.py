"""Where a lesson's results go: plots, metrics.json, progress bars. Every write is atomic.

    save_figure(fig, args.out / "loss.png")      # PNG; shown on screen only when interactive
    write_metrics(args.out, metrics, headline="test_accuracy")
    for batch in progress(loader, desc="epoch 1"): ...

Atomic means: write a temporary file next to the target, then `os.replace` it into place, so an
interrupted run never leaves a half-written file where a good one used to be.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import matplotlib

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUTS_ROOT = REPO_ROOT / "outputs"


def _has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


# Without a display (CI, ssh, containers) draw off-screen; must happen before pyplot is imported.
if not _has_display() and "matplotlib.pyplot" not in sys.modules:
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend choice above must come first)
from tqdm.auto import tqdm  # noqa: E402


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success move it onto `path` in one step.

    On any error the temporary file is removed and `path` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temp_path = Path(temp_name)
    try:
        yield temp_path
        os.replace(temp_path, path)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise


def lesson_output_dir(lesson: str, out: str | os.PathLike | None = None) -> Path:
    """`out` if given, else `outputs/<lesson>/` in the repository; created if missing."""
    directory = Path(out) if out else OUTPUTS_ROOT / lesson
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def is_interactive() -> bool:
    """True in a notebook or a terminal session with a GUI backend that can show windows."""
    if "ipykernel" in sys.modules:
        return True
    backend = matplotlib.get_backend().lower()
    return sys.stdout.isatty() and backend not in ("agg", "pdf", "svg", "ps", "cairo", "template")


def save_figure(fig: plt.Figure, path: str | os.PathLike, show: bool | None = None) -> Path:
    """Save `fig` as PNG at `path` (atomically), show it when interactive, then close it."""
    path = Path(path)
    with atomic_path(path) as temp_path:
        fig.savefig(temp_path, format="png", dpi=100, bbox_inches="tight")
    if show is None:
        show = is_interactive() and os.environ.get("CI") is None
    if show:
        plt.show()
    plt.close(fig)
    print(f"saved figure {_display_path(path)}")
    return path


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _jsonable(value):
    """Turn tensors, NumPy values, paths and non-finite floats into plain JSON values."""
    if hasattr(value, "tolist"):  # torch.Tensor, numpy arrays and scalars
        value = value.tolist()
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no inf/nan
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: str | os.PathLike, data) -> Path:
    """Write `data` as indented JSON, atomically."""
    path = Path(path)
    with atomic_path(path) as temp_path:
        temp_path.write_text(json.dumps(_jsonable(data), indent=2) + "\n", encoding="utf-8")
    return path


def write_metrics(out_dir: str | os.PathLike, metrics: dict, headline: str | None = None) -> Path:
    """Write `metrics` to `<out_dir>/metrics.json`; `headline` names the key the runner shows.

    When a stand-in replaced real data in this run, `"data": "stand-in"` and the names of the
    replaced datasets are recorded too (unless the lesson set `data` itself), so nobody mistakes
    a stand-in's accuracy for a real one.
    """
    from common.data import stand_ins_used  # here, not at the top: common.data imports us

    data = dict(metrics)
    replaced = stand_ins_used()
    if replaced:
        data.setdefault("data", "stand-in")
        data.setdefault("stand_ins", replaced)
    if headline is not None:
        if headline not in metrics:
            raise KeyError(f"headline metric {headline!r} is not among the metrics")
        data["headline"] = headline
    path = write_json(Path(out_dir) / "metrics.json", data)
    print(f"wrote {_display_path(path)}")
    return path


def progress(iterable: Iterable, desc: str = "", total: int | None = None, **kwargs) -> Iterable:
    """A tqdm progress bar on a terminal; silent when output goes to a file or a pipe."""
    quiet = not sys.stderr.isatty() and "ipykernel" not in sys.modules
    return tqdm(iterable, desc=desc, total=total, disable=quiet, leave=False, **kwargs)


class ReferenceValues:
    """The reference values (from CURRICULUM.md) a lesson reproduces, printed and counted.

        references = ReferenceValues()
        references.check("squeeze([1, 2, 3])", list(t.squeeze().shape), [2, 3])
        metrics = references.metrics()   # {"reference_values": "1/1", "all_match": True, ...}

    `ok` overrides the plain `value == expected` comparison (for tolerances, say).
    """

    def __init__(self):
        self.results: dict[str, tuple] = {}

    def clear(self) -> None:
        self.results.clear()

    def check(self, label: str, value, expected, ok: bool | None = None):
        if ok is None:
            ok = value == expected
        print(f"  {label}: {value}   (reference {expected}) {'ok' if ok else 'MISMATCH'}")
        self.results[label] = (value, bool(ok))
        return value

    def metrics(self) -> dict:
        """What metrics.json records: 'matched/total', whether all match, and every value."""
        matches = sum(ok for _, ok in self.results.values())
        summary = f"{matches}/{len(self.results)}"
        print(f"\nReference values reproduced: {summary}")
        return {
            "reference_values": summary,
            "all_match": matches == len(self.results),
            "values": {label: value for label, (value, _) in self.results.items()},
        }
