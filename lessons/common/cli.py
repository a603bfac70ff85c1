"""The command line every lesson shares: `args = lesson_args(__doc__, name="06_mlp", epochs=5)`.

Every lesson gets the same flags (`--quick --device --epochs --batch-size --data-dir --seed
--threads --no-download --out`, plus its own through `configure(parser)`), checked so that a bad
value is one line and exit status 2. A notebook has none: there `LESSONS_ARGS` holds the flags,
and `LESSONS_QUICK=1`, `LESSONS_DEVICE`, `LESSONS_DATA_DIR` and `LESSONS_THREADS` set defaults.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import torch

from common import LessonError, settings
from common.device import DeviceError, describe, pick_device, seed_everything
from common.report import in_notebook, lesson_output_dir
from common.settings import env_flag, non_negative_int, positive_float, positive_int

# Lessons import the shared flag types from here along with lesson_args.
__all__ = ["lesson_args", "non_negative_int", "positive_float", "positive_int"]
DATA, THREADS = settings.DATA_DIR_ENV, settings.THREADS_ENV


def lesson_parser(
    doc, name: str, *, epochs=1, batch_size=64, seed=0, prog=None, training_flags=True
) -> argparse.ArgumentParser:
    """The shared flags with this lesson's defaults (see `lesson_args`). A script that is not a
    lesson (a benchmark) passes its own `prog`, and `training_flags=False` when it has no single
    number of epochs or batch size to offer."""
    lines = (doc or "").strip().splitlines()
    parser = settings.OneLineErrorParser(
        prog=prog or f"python lessons/{name}.py",
        description=lines[0] if lines else "",
        epilog="\n".join(lines[1:]).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--quick", action="store_true", help=f"smoke run: seconds ({settings.QUICK_ENV}=1)")
    add("--device", help=f"{settings.DEVICE_CHOICES} (default ${settings.DEVICE_ENV}, else auto)")
    if training_flags:
        help_epochs = f"training epochs (default {epochs})"
        add("--epochs", type=positive_int, default=epochs, help=help_epochs)
        add("--batch-size", type=positive_int, default=batch_size, help=f"default {batch_size}")
    add("--data-dir", type=Path, help=f"data root (default ${DATA}, else data/)")
    add("--seed", type=non_negative_int, default=seed, help=f"random seed (default {seed})")
    add("--threads", type=positive_int, help=f"CPU threads (default ${THREADS})")
    add("--no-download", action="store_true", help=f"never download ({settings.OFFLINE_ENV}=1)")
    add("--out", type=Path, help=f"output folder (default outputs/{name}/)")
    return parser


def lesson_args(doc, argv=None, *, name: str, configure=None, threads=None, **defaults):
    """The lesson's flags, checked, with `device`, `data_dir` and `out` resolved.

    `argv=None` reads the command line (in a Jupyter kernel, `$LESSONS_ARGS`).
    `defaults` are `epochs`, `batch_size`, `seed`, `prog` and `training_flags` (`lesson_parser`);
    `threads` is the lesson's default thread count (tiny models run fastest on one), which
    `--threads` and `LESSONS_THREADS` override.
    Then it sets the thread count, seeds every generator, creates the output folder and prints
    one line saying where the lesson runs.
    """
    parser = lesson_parser(doc, name, **defaults)
    if configure is not None:
        configure(parser)
    if argv is None:  # a kernel's sys.argv is its own: there, $LESSONS_ARGS stands in for it
        argv = shlex.split(os.environ.get(settings.ARGS_ENV, "")) if in_notebook() else sys.argv[1:]
    args = parser.parse_args(list(argv))
    args.quick = args.quick or env_flag(settings.QUICK_ENV)
    args.lesson = name
    try:
        args.device = pick_device(args.device)
    except DeviceError as error:
        parser.error(f"argument --device: {error}")
    from_env = f"${DATA}" if os.environ.get(DATA, "").strip() else None
    source = "--data-dir" if args.data_dir else from_env  # None: the default data/, made on use
    args.data_dir = (args.data_dir or settings.default_data_dir()).expanduser()
    if source and not args.data_dir.is_dir():
        parser.error(f"{source}: {args.data_dir} is not a folder")
    if args.threads is None and os.environ.get(THREADS, "").strip():
        try:
            args.threads = positive_int(os.environ[THREADS])
        except argparse.ArgumentTypeError as error:
            parser.error(f"${THREADS}: {error}")
    args.threads = args.threads or threads
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    args.offline = args.no_download or env_flag(settings.OFFLINE_ENV)
    args.out = lesson_output_dir(name, args.out)

    sys.excepthook = _print_error_and_exit
    seed_everything(args.seed)
    mode = " | quick run" if args.quick else ""
    print(f"[{name}] {describe(args.device)} | seed {args.seed}{mode}")
    return args


def _print_error_and_exit(exc_type, exc, traceback) -> None:
    """A `LessonError` or Ctrl-C as one line, not a traceback (Python then exits with status 1;
    a notebook shows errors under their cells as usual)."""
    if issubclass(exc_type, LessonError):
        print(f"error: {exc}", file=sys.stderr)
    elif issubclass(exc_type, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
    else:  # a bug, not bad input: show the full traceback
        sys.__excepthook__(exc_type, exc, traceback)
