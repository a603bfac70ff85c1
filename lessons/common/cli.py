"""The command line every lesson shares.

    args = lesson_args(__doc__, name="06_mlp", epochs=5, batch_size=64)

gives every lesson the same flags (`--quick --device --epochs --batch-size --data-dir --seed
--threads --no-download --out`), validates them (a bad value exits with one line and status 2),
resolves the device and the data and output folders, seeds every generator and prints one line
saying where the lesson runs. A lesson adds its own flags with `configure=lambda parser: ...`.
Inside a notebook there is no command line: the defaults apply, and `LESSONS_QUICK=1`,
`LESSONS_DEVICE`, `LESSONS_DATA_DIR` and `LESSONS_THREADS` set what the flags would.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from common import LessonError
from common.device import DeviceError, describe, pick_device, seed_everything
from common.report import in_notebook, lesson_output_dir
from common.settings import (
    DATA_DIR_ENV,
    DEVICE_CHOICES,
    DEVICE_ENV,
    OFFLINE_ENV,
    QUICK_ENV,
    REPO_ROOT,
    THREADS_ENV,
    OneLineErrorParser,
    env_flag,
    non_negative_int,
    positive_float,
    positive_int,
)

# Lessons import the shared flag types from here along with lesson_args.
__all__ = ["lesson_args", "non_negative_int", "positive_float", "positive_int"]


def default_data_dir() -> Path:
    """`LESSONS_DATA_DIR` if set, else `<repo>/data`."""
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(env).expanduser() if env else REPO_ROOT / "data"


def lesson_parser(
    doc: str | None, name: str, *, epochs: int = 1, batch_size: int = 64, seed: int = 0
) -> argparse.ArgumentParser:
    """The shared flags with this lesson's defaults (see `lesson_args`)."""
    lines = (doc or "").strip().splitlines()
    parser = OneLineErrorParser(
        prog=f"python lessons/{name}.py",
        description=lines[0] if lines else "",
        epilog="\n".join(lines[1:]).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--quick", action="store_true", help=f"smoke run: seconds on a CPU (same as {QUICK_ENV}=1)")
    add("--device", default=None, help=f"{DEVICE_CHOICES} (default: ${DEVICE_ENV}, else auto)")
    add("--epochs", type=positive_int, default=epochs, help=f"training epochs (default {epochs})")
    add("--batch-size", type=positive_int, default=batch_size, help=f"default {batch_size}")
    add(
        "--data-dir",
        type=Path,
        default=None,
        help=f"data root (default: ${DATA_DIR_ENV}, else data/)",
    )
    add("--seed", type=non_negative_int, default=seed, help=f"random seed (default {seed})")
    add("--threads", type=positive_int, default=None, help=f"CPU threads (default: ${THREADS_ENV})")
    add("--no-download", action="store_true", help=f"never download (same as {OFFLINE_ENV}=1)")
    add("--out", type=Path, default=None, help=f"output folder (default outputs/{name}/)")
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
    threads: int | None = None,
) -> argparse.Namespace:
    """Parse and check the lesson's flags; return them with `device`, `data_dir`, `out` resolved.

    `argv=None` reads the command line (nothing inside a Jupyter kernel, whose `sys.argv` holds
    the kernel's own flags). `threads` is the lesson's own default thread count (tiny models run
    fastest on one); `--threads` and `LESSONS_THREADS` override it. Side effects, once the flags
    are valid: sets the thread count, seeds every generator, creates the output folder, prints one
    line saying where the lesson runs.
    """
    parser = lesson_parser(doc, name, epochs=epochs, batch_size=batch_size, seed=seed)
    if configure is not None:
        configure(parser)
    if argv is None:
        argv = [] if in_notebook() else sys.argv[1:]
    args = parser.parse_args(list(argv))
    args.quick = args.quick or env_flag(QUICK_ENV)
    args.lesson = name

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
    if args.threads is None:
        env_threads = os.environ.get(THREADS_ENV, "").strip()
        try:
            args.threads = positive_int(env_threads) if env_threads else threads
        except argparse.ArgumentTypeError as error:
            parser.error(f"${THREADS_ENV}: {error}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.offline = args.no_download or env_flag(OFFLINE_ENV)
    args.out = lesson_output_dir(name, args.out)

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
    """Print an uncaught `LessonError` or Ctrl-C as one line instead of a traceback.

    Python exits with status 1 after the hook runs; in a notebook the hook is not called and
    the kernel shows the error under its cell as usual.
    """
    sys.excepthook = _print_error_and_exit
