"""The command line every lesson shares.

    args = lesson_args(__doc__, argv, name="06_mlp", epochs=5, batch_size=64)

gives every lesson the same flags (`--quick --device --epochs --batch-size --data-dir --seed
--no-download --out`), validates them (a bad value exits with one line and status 2), resolves
the device and the data and output folders, seeds every generator and prints one line saying
where the lesson runs. A lesson adds its own flags with `configure=lambda parser: ...`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from common import LessonError

# No torch or matplotlib at import time: run_lesson.py reuses this module and must start fast.
REPO_ROOT = Path(__file__).resolve().parents[2]
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"
DATA_DIR_ENV = "LESSONS_DATA_DIR"
OFFLINE_ENV = "LESSONS_OFFLINE"


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (`prog: error: ...`), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (learning rates, weight decay, ...)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _summary(doc: str | None) -> tuple[str, str]:
    """The docstring's first line (argparse description) and the rest (shown after the flags)."""
    lines = (doc or "").strip().splitlines()
    return (lines[0] if lines else ""), "\n".join(lines[1:]).strip()


def offline_requested(no_download: bool = False) -> bool:
    """True when downloads are off: `--no-download` or `LESSONS_OFFLINE=1`."""
    return no_download or os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes")


def default_data_dir() -> Path:
    """`LESSONS_DATA_DIR` if set, else `<repo>/data`."""
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(env).expanduser() if env else REPO_ROOT / "data"


def lesson_parser(
    doc: str | None,
    name: str,
    *,
    epochs: int = 1,
    batch_size: int = 64,
    seed: int = 0,
) -> argparse.ArgumentParser:
    """The shared flags with this lesson's defaults (see `lesson_args`)."""
    description, epilog = _summary(doc)
    parser = OneLineErrorParser(
        prog=f"python lessons/{name}.py",
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: a few batches, seconds on a CPU"
    )
    parser.add_argument(
        "--device",
        default=None,
        help=f"{DEVICE_CHOICES} (default: $LESSONS_DEVICE, else auto)",
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=epochs, help=f"training epochs (default {epochs})"
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=batch_size,
        help=f"mini-batch size (default {batch_size})",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"data root (default: ${DATA_DIR_ENV}, else <repo>/data)",
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=seed, help=f"random seed (default {seed})"
    )
    parser.add_argument(
        "--no-download",
        action="store_true",
        help=f"never download; use the offline stand-in data (same as {OFFLINE_ENV}=1)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help=f"output folder (default outputs/{name}/)"
    )
    return parser


def lesson_args(
    doc: str | None,
    argv: Sequence[str] | None = None,
    *,
    name: str,
    configure: Callable[[argparse.ArgumentParser], None] | None = None,
    epochs: int = 1,
    batch_size: int = 64,
    seed: int = 0,
) -> argparse.Namespace:
    """Parse and check the lesson's flags; return them with `device`, `data_dir`, `out` resolved.

    `argv=None` reads the command line (or nothing, inside a Jupyter kernel). Side effects, once
    the flags are valid: seeds every generator, creates the output folder, prints one line.
    """
    from common.device import DeviceError, describe, pick_device, seed_everything
    from common.report import lesson_output_dir

    parser = lesson_parser(doc, name, epochs=epochs, batch_size=batch_size, seed=seed)
    if configure is not None:
        configure(parser)
    if argv is None:
        # Inside Jupyter, sys.argv holds the kernel's own flags, not the student's.
        argv = [] if "ipykernel" in sys.modules else sys.argv[1:]
    args = parser.parse_args(list(argv))

    try:
        args.device = pick_device(args.device)
    except DeviceError as error:
        parser.error(f"argument --device: {error}")
    if args.data_dir is None:
        args.data_dir = default_data_dir()
        source = f"${DATA_DIR_ENV}" if os.environ.get(DATA_DIR_ENV, "").strip() else None
    else:
        source = "--data-dir"
    args.data_dir = args.data_dir.expanduser()
    if source and not args.data_dir.is_dir():
        parser.error(f"{source}: {args.data_dir} is not a folder")
    args.offline = offline_requested(args.no_download)
    args.out = lesson_output_dir(name, args.out)
    args.lesson = name

    install_error_printer()
    seed_everything(args.seed)
    mode = " | quick run" if args.quick else ""
    print(f"[{name}] {describe(args.device)} | seed {args.seed}{mode}")
    return args


def _print_error_and_exit(exc_type, exc, traceback) -> None:
    if issubclass(exc_type, LessonError):
        print(f"error: {exc}", file=sys.stderr)
    elif issubclass(exc_type, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
    else:  # a bug, not bad input: show the full traceback
        sys.__excepthook__(exc_type, exc, traceback)


def install_error_printer() -> None:
    """Print an uncaught `LessonError` or Ctrl-C as one line instead of a traceback."""
    sys.excepthook = _print_error_and_exit
