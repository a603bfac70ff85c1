"""Play the course: run lessons in order, each in a fresh Python process, and summarise.

    python run_lesson.py                 # every lesson, in order
    python run_lesson.py --list          # what there is, and how long each takes
    python run_lesson.py 3               # one lesson (also 03)
    python run_lesson.py 3-7 --quick     # a range, smoke-run
    python run_lesson.py 3,5,9 cnn       # a list, and lessons whose name contains "cnn"

Flags `--quick --device --epochs --data-dir --seed --no-download` are passed to every lesson.
The run keeps going after a failure (unless `--fail-fast`) and ends with a table: lesson, status,
wall time and the headline metric from the lesson's `metrics.json`. Exit status: 0 when every
selected lesson is ok, 1 when one is not, 2 for bad usage, 130 when interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO_ROOT / "lessons"))

from common.settings import (  # noqa: E402  (lessons/ must be on the path first)
    OneLineErrorParser,
    atomic_path,
    non_negative_int,
    positive_float,
    positive_int,
)

LESSON_FILE = re.compile(r"^(\d{2})_(\w+)\.py$")
EXIT_USAGE, EXIT_INTERRUPTED = 2, 130


@dataclass
class Lesson:
    number: int
    path: Path
    title: str = ""
    summary: str = ""
    quick_time: str = "?"
    full_time: str = "?"

    @property
    def name(self) -> str:
        return self.path.stem


@dataclass
class Result:
    lesson: Lesson
    status: str
    seconds: float
    headline: str = ""
    notes: list[str] = field(default_factory=list)
    started: float = 0.0  # when the run began (time.time()), to tell its files from older ones


# --------------------------------------------------------------------------- discovery
def read_lesson(path: Path) -> Lesson:
    """Number, title, summary and typical durations, read from the file without running it."""
    number = int(LESSON_FILE.match(path.name).group(1))
    lesson = Lesson(number, path)
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    except (SyntaxError, UnicodeDecodeError, OSError):
        doc = ""
    first_line = doc.strip().splitlines()[0] if doc.strip() else path.stem
    title, _, summary = first_line.partition(":")
    lesson.title, lesson.summary = title.strip(), summary.strip().rstrip(".")
    if time_line := re.search(r"^Time:(.*)$", doc, re.MULTILINE):
        if quick := re.search(r"--quick\s+~?\s*([\d.]+\s*(?:s|min|h))", time_line.group(1)):
            lesson.quick_time = quick.group(1)
        if full := re.search(r"full\s+~?\s*([\d.]+\s*(?:s|min|h))", time_line.group(1)):
            lesson.full_time = full.group(1)
    return lesson


def discover(lessons_dir: Path) -> list[Lesson]:
    """Every `NN_name.py` in `lessons_dir`, in lesson order."""
    paths = [path for path in lessons_dir.glob("*.py") if LESSON_FILE.match(path.name)]
    return sorted((read_lesson(path) for path in paths), key=lambda lesson: lesson.number)


class SelectionError(ValueError):
    pass


def select(lessons: list[Lesson], selections: list[str]) -> list[Lesson]:
    """Lessons matching `3`, `03`, `3-7`, `3,5,9` or a name substring such as `cnn`."""
    tokens = [token.strip() for text in selections for token in text.split(",") if token.strip()]
    if not tokens:
        return list(lessons)
    chosen: set[int] = set()
    for token in tokens:
        if re.fullmatch(r"\d+", token):
            matches = [lesson for lesson in lessons if lesson.number == int(token)]
        elif span := re.fullmatch(r"(\d+)\s*-\s*(\d+)", token):
            low, high = sorted((int(span.group(1)), int(span.group(2))))
            matches = [lesson for lesson in lessons if low <= lesson.number <= high]
        else:
            needle = token.lower()
            matches = [
                lesson
                for lesson in lessons
                if needle in lesson.name.lower() or needle in lesson.title.lower()
            ]
        if not matches:
            raise SelectionError(f"no lesson matches {token!r}")
        chosen.update(lesson.number for lesson in matches)
    return [lesson for lesson in lessons if lesson.number in chosen]


def format_list(lessons: list[Lesson]) -> str:
    rows = [("#", "lesson", "what you learn", "--quick", "full")]
    rows += [
        (f"{lesson.number:02d}", lesson.title, lesson.summary, lesson.quick_time, lesson.full_time)
        for lesson in lessons
    ]
    return format_table(rows)


def format_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------- running
def headline_of(metrics_path: Path, started: float) -> str | None:
    """The headline metric of a metrics.json written after `started`; None if there is none."""
    try:
        if metrics_path.stat().st_mtime < started:
            return None  # left over from an earlier run
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(metrics, dict):
        return None
    name = metrics.get("headline")
    if name is None or name not in metrics:
        return ""
    value = metrics[name]
    if isinstance(value, float):  # a tiny difference (3e-08) in e-notation, not as 0.0000
        value = f"{value:.2e}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"
    text = f"{name}={value}"
    if metrics.get("data") == "stand-in":
        text += " (stand-in data)"
    return text


def stop(process: subprocess.Popen, sig: int = signal.SIGINT) -> None:
    """Ask the lesson (and any worker processes it started) to stop; kill it if it lingers."""
    try:
        if os.name == "posix":
            os.killpg(process.pid, sig)
        else:
            process.terminate()
        process.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        if os.name == "posix":
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait()


def run_one(
    lesson: Lesson,
    passthrough: list[str],
    out_root: Path,
    timeout: float | None,
    notebook: bool = False,
) -> Result:
    out_dir = out_root / lesson.name
    flags = [*passthrough, "--out", str(out_dir)]
    if notebook:  # this script again, executing the lesson as a notebook (see notebook_main)
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            NOTEBOOK_COMMAND,
            str(lesson.path),
        ]
        (out_dir / NOTEBOOK_ERROR).unlink(missing_ok=True)
    else:
        command = [sys.executable, str(lesson.path)]
    command += flags
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # Figures are saved, not shown: a plot window would stop the course until someone closes it.
    env.setdefault("MPLBACKEND", "Agg")
    env.setdefault("PYTHONIOENCODING", "utf-8")  # the lessons print ×, ≈: Windows pipes too
    started = time.time()
    # A session of its own, so a timeout can stop the lesson's DataLoader workers as well.
    process = subprocess.Popen(command, env=env, start_new_session=(os.name == "posix"))
    try:
        returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(process, signal.SIGTERM)
        return Result(lesson, "timed out", time.time() - started, notes=[f"after {timeout:g} s"])
    except KeyboardInterrupt:
        stop(process)
        return Result(lesson, "interrupted", time.time() - started)
    seconds = time.time() - started
    if returncode != 0:
        cell_error = out_dir / NOTEBOOK_ERROR
        if notebook and cell_error.is_file():
            return Result(lesson, "failed", seconds, notes=[cell_error.read_text(encoding="utf-8")])
        return Result(lesson, "failed", seconds, notes=[f"exit status {returncode}"])
    headline = headline_of(out_dir / "metrics.json", started)
    if headline is None:
        return Result(lesson, "failed", seconds, notes=["did not run: no metrics.json written"])
    return Result(lesson, "ok", seconds, headline)


# --------------------------------------------------------------------------- notebooks
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
GUARD = 'if __name__ == "__main__":'


def lesson_notebook(path: Path):
    """The lesson as a notebook: jupytext reads its `# %%` cells; the docstring becomes the title.

    (A bare docstring left as a code cell would only echo itself as the cell's output.)
    """
    import jupytext
    from nbformat.v4 import new_markdown_cell

    notebook = jupytext.read(path)
    first = notebook.cells[0] if notebook.cells else None
    if first is not None and first.cell_type == "code":
        try:
            body = ast.parse(first.source).body
        except SyntaxError:
            body = []
        if len(body) == 1 and isinstance(getattr(body[0], "value", None), ast.Constant):
            title, _, rest = str(body[0].value.value).strip().partition("\n")
            text = f"# {title}\n\n```text\n{rest.strip()}\n```" if rest.strip() else f"# {title}"
            notebook.cells[0] = new_markdown_cell(text)
    return notebook


def execute_notebook(notebook, cwd: Path, env: dict, timeout: float | None = None):
    """Run every cell in a fresh Python kernel started in `cwd` with `env`; figures inline.

    Raises nbclient's `CellExecutionError` at the first cell that fails.
    """
    from nbclient import NotebookClient

    env = {**env, "MPLBACKEND": INLINE_BACKEND}  # an inherited Agg would hide every figure
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
        extra_arguments=["--IPKernelApp.log_level=ERROR"],  # not its warnings about TCP
    )
    client.execute(cwd=str(cwd), env=env)
    return notebook


NOTEBOOK_COMMAND, NOTEBOOK_ERROR = "--execute-notebook", "notebook-error.txt"


def notebook_main(path: Path, lesson_flags: list[str]) -> int:
    """`run_lesson.py --execute-notebook LESSON FLAGS`: the lesson as an executed notebook.

    The kernel gets FLAGS through `$LESSONS_ARGS` (a notebook has no command line) and writes
    what the script would; the notebook, with every output and figure inline, is saved as
    `<out>/<lesson>.ipynb` even when a cell fails. A failing cell is one line on stderr (and in
    `<out>/notebook-error.txt`, for the runner's table) and exit status 1.
    """
    import nbformat
    from nbclient.exceptions import CellExecutionError

    out = Path(lesson_flags[lesson_flags.index("--out") + 1])
    out.mkdir(parents=True, exist_ok=True)
    notebook = lesson_notebook(path)
    env = dict(os.environ, LESSONS_ARGS=shlex.join(lesson_flags))
    problem = None
    try:
        execute_notebook(notebook, path.parent, env)
    except CellExecutionError as error:
        number = next((n for n, cell in enumerate(notebook.cells, 1) if any(
            output.output_type == "error" for output in cell.get("outputs", []))), "?")  # fmt: skip
        reason = f"{error.ename}: {error.evalue}".strip().splitlines()[0][:300]
        problem = f"cell {number} failed: {reason}"
    finally:
        with atomic_path(out / f"{path.stem}.ipynb") as temp_path:
            nbformat.write(notebook, temp_path)
    print(f"wrote {out / f'{path.stem}.ipynb'}")
    if problem is not None:
        (out / NOTEBOOK_ERROR).write_text(problem, encoding="utf-8")
        print(f"error: {problem}", file=sys.stderr)
        return 1
    return 0


def summary_rows(results: list[Result]) -> list[tuple[str, ...]]:
    rows = [("lesson", "status", "wall time", "headline metric")]
    for result in results:
        metric = result.headline or "; ".join(result.notes)
        rows.append((result.lesson.name, result.status, f"{result.seconds:.1f} s", metric))
    return rows


def write_report(path: Path, rows: list[tuple[str, ...]], argv: list[str]) -> None:
    """The summary as a Markdown table, written atomically."""
    lines = [
        "# Lesson run",
        "",
        f"`{' '.join(['python run_lesson.py', *argv])}`",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "---|" * len(rows[0]),
    ]
    lines += [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows[1:]
    ]
    with atomic_path(path) as temp_path:
        temp_path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="python run_lesson.py",
        description="Run lessons in order, each in its own process, and print a summary table.",
        epilog="Selections: 3, 03, 3-7, 3,5,9 or part of a name (cnn). None means every lesson.",
    )
    parser.add_argument("selection", nargs="*", help="which lessons (default: all)")
    parser.add_argument("--list", action="store_true", help="list the lessons and exit")
    lesson_flags = parser.add_argument_group("passed to every lesson")
    lesson_flags.add_argument("--quick", action="store_true", help="smoke run, seconds per lesson")
    lesson_flags.add_argument("--device", help="auto, cpu, cuda, cuda:N, mps")
    lesson_flags.add_argument("--epochs", type=positive_int, help="override epochs")
    lesson_flags.add_argument("--data-dir", type=Path, help="data root")
    lesson_flags.add_argument("--seed", type=non_negative_int, help="random seed")
    lesson_flags.add_argument("--no-download", action="store_true", help="never download data")
    parser.add_argument("--timeout", type=positive_float, help="seconds allowed per lesson")
    parser.add_argument("--fail-fast", action="store_true", help="stop at the first failure")
    parser.add_argument(
        "--notebook",
        action="store_true",
        help="run each lesson as a notebook; saves outputs/<lesson>/<lesson>.ipynb, executed",
    )
    parser.add_argument(
        "--report",
        type=Path,
        action="append",
        default=[],
        help="also write the summary to FILE: .md for a table, .html for the course report "
        "with every figure (may be given twice)",
    )
    parser.add_argument(
        "--lessons-dir", type=Path, default=REPO_ROOT / "lessons", help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--out-root", type=Path, default=REPO_ROOT / "outputs", help=argparse.SUPPRESS
    )
    return parser


def passthrough_flags(args: argparse.Namespace) -> list[str]:
    flags = ["--quick"] if args.quick else []
    for flag in ("device", "epochs", "data_dir", "seed"):
        value = getattr(args, flag)
        if value is not None:
            flags += [f"--{flag.replace('_', '-')}", str(value)]
    if args.no_download:
        flags.append("--no-download")
    return flags


def environment(args: argparse.Namespace) -> dict[str, str]:
    """Where the lessons ran, for the course report: device, torch and Python versions."""
    from common.device import describe, pick_device

    line = describe(pick_device(args.device))  # "device cpu (2 threads) | torch 2.14.1 | ..."
    device, torch_version, python = (part.split(" ", 1)[1] for part in line.split(" | "))
    return {"device": device, "torch": torch_version, "python": python}


def check_device(parser: argparse.ArgumentParser, name: str | None) -> None:
    """Refuse an unavailable device once, up front, instead of once per lesson."""
    if name is None or name.strip().lower() in ("auto", "cpu"):
        return  # always valid; no need to pay for importing torch here
    from common.device import DeviceError, pick_device

    try:
        pick_device(name)
    except DeviceError as error:
        parser.error(f"argument --device: {error}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == [NOTEBOOK_COMMAND]:
        return notebook_main(Path(argv[1]), argv[2:])
    parser = build_parser()
    args = parser.parse_args(argv)
    lessons = discover(args.lessons_dir)
    if not lessons:
        parser.error(f"no lessons (NN_name.py files) in {args.lessons_dir}")
    if args.list:
        print(format_list(lessons))
        return 0
    try:
        chosen = select(lessons, args.selection)
    except SelectionError as error:
        print(f"error: {error}. The lessons are:\n{format_list(lessons)}", file=sys.stderr)
        return EXIT_USAGE
    if args.data_dir is not None and not args.data_dir.is_dir():
        parser.error(f"argument --data-dir: {args.data_dir} is not a folder")
    check_device(parser, args.device)

    passthrough = passthrough_flags(args)
    results: list[Result] = []
    interrupted = False
    try:
        for position, lesson in enumerate(chosen, start=1):
            print(f"\n=== [{position}/{len(chosen)}] {lesson.name}: {lesson.title} ===", flush=True)
            started = time.time()
            result = run_one(lesson, passthrough, args.out_root, args.timeout, args.notebook)
            result.started = started
            results.append(result)
            if result.status == "interrupted":
                interrupted = True
                break
            if result.status != "ok" and args.fail_fast:
                print(f"stopping after {lesson.name} failed (--fail-fast)")
                break
    except KeyboardInterrupt:  # Ctrl-C between two lessons
        interrupted = True

    rows = summary_rows(results)
    passed = sum(result.status == "ok" for result in results)
    print(f"\n{format_table(rows)}\n\n{passed}/{len(chosen)} lessons ok")
    for report in args.report:
        if report.suffix.lower() in (".html", ".htm"):
            import course_report

            course_report.write_html(report, results, args.out_root, argv, environment(args))
        else:
            write_report(report, rows, argv)
        print(f"wrote {report}")
    if interrupted:
        print("interrupted: the table shows the lessons run so far", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0 if passed == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
