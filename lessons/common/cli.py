"""The command line every lesson shares: `args = lesson_args(__doc__, name="06_mlp", epochs=5)`.

Every lesson gets the same flags (`--quick --device --epochs --batch-size --data-dir --seed
--threads --no-download --out`, plus its own through `configure(parser)`), checked so that a bad
value is one line and exit status 2. A notebook has no command line: there `LESSONS_QUICK=1`,
`LESSONS_DEVICE`, `LESSONS_DATA_DIR` and `LESSONS_THREADS` do what the flags would.
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
    add("--data-dir", type=Path, default=None, help=f"data root (${DATA_DIR_ENV}, else data/)")
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
    """The lesson's flags, checked, with `device`, `data_dir` and `out` resolved.

    `argv=None` reads the command line (none in a Jupyter kernel, whose `sys.argv` is its own).
    `threads` is the lesson's default thread count (tiny models run fastest on one), which
    `--threads` and `LESSONS_THREADS` override. Then it sets the thread count, seeds every
    generator, creates the output folder and prints one line saying where the lesson runs.
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
    from_env = f"${DATA_DIR_ENV}" if os.environ.get(DATA_DIR_ENV, "").strip() else None
    source = "--data-dir" if args.data_dir else from_env  # None: the default data/, made on use
    args.data_dir = (args.data_dir or default_data_dir()).expanduser()
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
    """Print an uncaught `LessonError` or Ctrl-C as one line, not a traceback (then Python exits
    with status 1; a notebook shows the error under its cell as usual)."""
    sys.excepthook = _print_error_and_exit
