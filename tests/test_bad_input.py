"""Every bad input the course must survive, run from the command line as a student would.

One row per case: the command, the exit status, the one line it must print (no traceback), and
what must survive it. `{tmp}` in a command is the case's own temporary folder; `prepare` puts the
bad input there first. The README's "When something is wrong" lists the same cases.
"""

from __future__ import annotations

import gzip
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import LESSONS_DIR, REPO_ROOT

RUNNER = str(REPO_ROOT / "run_lesson.py")


def lesson(stem: str) -> str:
    return str(LESSONS_DIR / f"{stem}.py")


@dataclass
class Case:
    name: str
    command: list[str]  # what follows `python`; "{tmp}" is the case's folder
    status: int
    message: str  # a regex the one line on stderr (stdout for the runner's table) must match
    prepare: Callable[[Path], None] | None = None
    cwd: str | None = None  # run from this folder instead of the repository
    survives: str | None = None  # a file under {tmp} that must be byte-identical afterwards
    stream: str = "stderr"


# --------------------------------------------------------------------------- bad files
def truncated_mnist(tmp: Path) -> None:
    raw = tmp / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x00" * 5000)[:100])


def diabetes_with_wrong_columns(tmp: Path) -> None:
    (tmp / "data" / "liuer").mkdir(parents=True)
    rows = "".join(f"0.{i},0.5,1\n" for i in range(20))  # 3 columns, not 9
    (tmp / "data" / "liuer" / "diabetes.csv.gz").write_bytes(gzip.compress(rows.encode()))


def truncated_ag_news(tmp: Path) -> None:
    (tmp / "data" / "AG_NEWS").mkdir(parents=True)
    rows = "".join(f'"3","Title {i}","Some description {i}"\n' for i in range(40))
    (tmp / "data" / "AG_NEWS" / "test.csv").write_text(rows + '"2","Cut off', encoding="utf-8")


def checkpoint(content: bytes | None = None, malicious: bool = False):
    def prepare(tmp: Path) -> None:
        empty_folder("empty")(tmp)  # the data root: the stand-in, quickly
        (tmp / "out").mkdir()
        path = tmp / "out" / "checkpoint.pt"
        if malicious:
            torch.save({"epoch": 1, "model": {}, "trap": print}, path)  # unpickling calls print
        else:
            torch.save({"epoch": 1, "model": {"w": torch.ones(1000)}}, path)
            if content is not None:
                path.write_bytes(content if content else path.read_bytes()[:300])

    return prepare


def empty_folder(name: str, read_only: bool = False):
    def prepare(tmp: Path) -> None:
        (tmp / name).mkdir()
        if read_only:
            (tmp / name).chmod(0o555)

    return prepare


def a_file(tmp: Path) -> None:
    (tmp / "a-file.txt").write_text("not a folder\n", encoding="utf-8")


QUICK = ["--quick", "--device", "cpu"]
RESUME = [
    lesson("12_save_load"),
    *QUICK,
    "--resume",
    "--out",
    "{tmp}/out",
    "--data-dir",
    "{tmp}/empty",
]
USAGE = r"python lessons/\d\d_\w+\.py: error: "
CASES = [
    # the runner
    Case("unknown lesson", [RUNNER, "99"], 2, r"^error: no lesson matches '99'\. The lessons are:"),
    Case("unknown range", [RUNNER, "40-50"], 2, r"^error: no lesson matches '40-50'"),
    Case("runner --epochs 0", [RUNNER, "--epochs", "0"], 2, r"--epochs: must be at least 1, got 0"),
    Case("runner --timeout 0", [RUNNER, "--timeout", "0"], 2, r"--timeout: must be a positive"),
    Case("runner --device tpu", [RUNNER, "--device", "tpu"], 2, r"'tpu' is not a device name"),
    Case("runner --data-dir missing", [RUNNER, "--data-dir", "{tmp}/nope"], 2, r"is not a folder"),
    # flags of a lesson
    Case("--epochs 0", [lesson("06_mlp"), "--epochs", "0"], 2, USAGE + r"argument --epochs: must"),
    Case("--batch-size -1", [lesson("07_cnn"), "--batch-size", "-1"], 2, r"must be at least 1"),
    Case(
        "--seed x", [lesson("04_autograd"), "--seed", "x"], 2, r"expected a whole number, got 'x'"
    ),
    Case("--lr 0", [lesson("07_cnn"), "--lr", "0"], 2, r"--lr: must be a positive number, got 0"),
    Case("unknown flag", [lesson("01_tensors"), "--frobnicate"], 2, r"unrecognized arguments"),
    Case("--device tpu", [lesson("01_tensors"), "--device", "tpu"], 2, r"'tpu' is not a device"),
    # data
    Case(
        "--data-dir missing",
        [lesson("03_datasets_dataloaders"), *QUICK, "--data-dir", "{tmp}/nope"],
        2,
        r"--data-dir: .*nope is not a folder",
    ),
    Case(
        "--data-dir is a file",
        [lesson("03_datasets_dataloaders"), *QUICK, "--data-dir", "{tmp}/a-file.txt"],
        2,
        r"a-file\.txt is not a folder",
        a_file,
    ),
    Case(
        "truncated MNIST .gz",
        [
            lesson("07_cnn"),
            *QUICK,
            "--dataset",
            "mnist",
            "--data-dir",
            "{tmp}/data",
            "--out",
            "{tmp}/out",
        ],
        1,
        r"^error: .*train-images-idx3-ubyte\.gz is "
        r"corrupt",
        truncated_mnist,
        survives="data/MNIST/raw/train-images-idx3-ubyte.gz",
    ),
    Case(
        "CSV with wrong columns",
        [lesson("05_linear_models"), *QUICK, "--data-dir", "{tmp}/data", "--out", "{tmp}/out"],
        1,
        r"^error: .*diabetes\.csv\.gz: expected .*9",
        diabetes_with_wrong_columns,
    ),
    Case(
        "truncated AG_NEWS CSV",
        [
            lesson("10_text_classification"),
            *QUICK,
            "--data-dir",
            "{tmp}/data",
            "--out",
            "{tmp}/out",
        ],
        1,
        r"^error: .*test\.csv",
        truncated_ag_news,
        survives="data/AG_NEWS/test.csv",
    ),
    # names to predict
    Case(
        "empty --predict name",
        [lesson("11_name_classifier"), *QUICK, "--out", "{tmp}/out", "--predict", ""],
        1,
        r"^error: --predict",
    ),
    Case(
        "non-ASCII --predict name",
        [lesson("11_name_classifier"), *QUICK, "--out", "{tmp}/out", "--predict", "Müller"],
        1,
        r"^error: --predict.*Müller",
    ),
    # checkpoints
    Case(
        "corrupt checkpoint",
        RESUME,
        1,
        r"^error: .*checkpoint\.pt is not a readable checkpoint",
        checkpoint(b"\x80\x02 not a checkpoint"),
        survives="out/checkpoint.pt",
    ),
    Case(
        "truncated checkpoint",
        RESUME,
        1,
        r"^error: .*checkpoint\.pt is not a readable checkpoint",
        checkpoint(b""),
        survives="out/checkpoint.pt",
    ),
    Case(
        "malicious pickle as checkpoint",
        RESUME,
        1,
        r"^error: .*checkpoint\.pt .*Unsupported",
        checkpoint(malicious=True),
        survives="out/checkpoint.pt",
    ),
    Case(
        "missing checkpoint",
        RESUME,
        1,
        r"^error: --resume: there is no checkpoint at",
        empty_folder("empty"),
    ),
]
ACCELERATORS = [
    name
    for name, present in [
        ("cuda", torch.cuda.is_available()),
        ("mps", torch.backends.mps.is_available()),
    ]
    if not present
]
CASES += [
    Case(
        f"--device {name} where absent",
        [lesson("01_tensors"), "--device", name],
        2,
        rf"device '{name}' is not available on this machine \(available: cpu",
    )
    for name in ACCELERATORS
]
CASES += [
    Case(
        f"runner --device {name} where absent",
        [RUNNER, "--device", name],
        2,
        rf"device '{name}' is not available on this machine",
    )
    for name in ACCELERATORS
]


def run(command: list[str], tmp: Path, cwd: str | None = None, timeout: float = 300):
    argv = [part.replace("{tmp}", str(tmp)) for part in command]
    env = {**os.environ, "LESSONS_OFFLINE": "1", "MPLBACKEND": "Agg"}
    env.pop("LESSONS_DATA_DIR", None)  # the cases bring their own data, or none
    return subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or REPO_ROOT,
        env=env,
        encoding="utf-8",
    )


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_one_clear_line(case: Case, tmp_path):
    if case.prepare is not None:
        case.prepare(tmp_path)
    kept = (tmp_path / case.survives).read_bytes() if case.survives else None
    result = run(case.command, tmp_path, case.cwd)
    assert result.returncode == case.status, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    if case.command[0] == RUNNER and case.status == 2 and "no lesson matches" in case.message:
        lines = lines[:1]  # the runner follows an unknown selection with the list of lessons
    assert len(lines) == 1, result.stderr
    assert re.search(case.message, lines[0]), lines[0]
    if kept is not None:  # nothing lost: the bad file is still there, as it was
        assert (tmp_path / case.survives).read_bytes() == kept


# ---------------------------------------------------------------- cases that need more than a row
def test_a_read_only_data_root_is_left_untouched(tmp_path):
    empty_folder("readonly", read_only=True)(tmp_path)
    try:
        result = run(
            [lesson("07_cnn"), *QUICK, "--data-dir", "{tmp}/readonly", "--out", "{tmp}/out"],
            tmp_path,
        )
        assert result.returncode == 0, result.stderr
        assert "stand-in" in result.stdout and list((tmp_path / "readonly").iterdir()) == []
    finally:
        (tmp_path / "readonly").chmod(0o755)


def test_a_lesson_runs_from_another_working_directory(tmp_path):
    result = run([lesson("04_autograd"), "--out", "{tmp}/out"], tmp_path, cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "metrics.json").is_file()
    assert not (tmp_path / "outputs").exists()  # nothing written relative to the odd folder


@pytest.fixture
def fake_lessons(tmp_path) -> Path:
    """Two tiny lessons for the runner: one sleeps, one exits 0 without writing metrics.json."""
    folder = tmp_path / "lessons"
    folder.mkdir()
    doc = '"""{}: a stand-in for the runner tests.\n\nTime: --quick ~1 s, full ~1 s.\n"""\n'
    sleepy = (
        "import sys, time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    sys.exit(1)\n"
    )
    (folder / "01_sleepy.py").write_text(doc.format("Sleepy") + sleepy, encoding="utf-8")
    (folder / "02_silent.py").write_text(doc.format("Silent") + "print('hi')\n", encoding="utf-8")
    return folder


def runner(fake_lessons: Path, *argv: str) -> list[str]:
    return [
        RUNNER,
        *argv,
        "--lessons-dir",
        str(fake_lessons),
        "--out-root",
        str(fake_lessons.parent / "outputs"),
    ]


def test_a_lesson_that_times_out(fake_lessons, tmp_path):
    result = run(runner(fake_lessons, "1", "--timeout", "1"), tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert re.search(r"01_sleepy\s+timed out\s+[\d.]+ s\s+after 1 s", result.stdout)


def test_a_lesson_that_exits_0_without_metrics(fake_lessons, tmp_path):
    result = run(runner(fake_lessons, "2"), tmp_path)
    assert result.returncode == 1
    assert re.search(r"02_silent\s+failed .*did not run: no metrics\.json written", result.stdout)


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT, which is how Ctrl-C arrives")
def test_ctrl_c_in_the_runner_prints_the_summary_so_far(fake_lessons):
    command = [sys.executable, *runner(fake_lessons, "1-2", "--report", "partial.md")]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=fake_lessons.parent,
        encoding="utf-8",
    )
    time.sleep(3)  # the sleepy lesson has started
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130 and "Traceback" not in stderr
    assert re.search(r"01_sleepy\s+interrupted", stdout)
    assert stderr.strip() == "interrupted: the table shows the lessons run so far"
    assert (fake_lessons.parent / "partial.md").is_file()  # the report of what did run
