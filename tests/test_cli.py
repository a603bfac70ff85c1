"""The shared lesson command line: defaults, validation, resolution, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from common import LessonError
from common.cli import _print_error_and_exit, lesson_args
from common.settings import REPO_ROOT, default_data_dir

DOC = """Demo: a lesson used by the tests.

What you will learn
  - nothing much
"""


def parse(argv, monkeypatch, tmp_path, **defaults):
    monkeypatch.delenv("LESSONS_DATA_DIR", raising=False)
    monkeypatch.delenv("LESSONS_OFFLINE", raising=False)
    monkeypatch.delenv("LESSONS_DEVICE", raising=False)
    return lesson_args(DOC, ["--out", str(tmp_path / "out"), *argv], name="99_demo", **defaults)


def test_defaults(monkeypatch, tmp_path, capsys):
    args = parse([], monkeypatch, tmp_path, epochs=3, batch_size=32, seed=5)
    assert (args.quick, args.epochs, args.batch_size, args.seed) == (False, 3, 32, 5)
    assert args.device == torch.device("cpu")
    assert args.data_dir == REPO_ROOT / "data"
    assert args.offline is False
    assert args.out.is_dir()
    assert args.lesson == "99_demo"
    banner = capsys.readouterr().out.strip()
    assert banner.startswith("[99_demo] device cpu") and "seed 5" in banner


def test_flags_override_defaults(monkeypatch, tmp_path):
    argv = ["--quick", "--epochs", "2", "--batch-size", "8", "--seed", "0", "--no-download"]
    argv += ["--data-dir", str(tmp_path), "--device", "cpu"]
    args = parse(argv, monkeypatch, tmp_path)
    assert (args.quick, args.epochs, args.batch_size, args.seed) == (True, 2, 8, 0)
    assert args.data_dir == tmp_path
    assert args.offline is True


def test_data_dir_resolution_order(monkeypatch, tmp_path):
    env_root, flag_root = tmp_path / "env", tmp_path / "flag"
    env_root.mkdir()
    flag_root.mkdir()
    monkeypatch.delenv("LESSONS_DATA_DIR", raising=False)
    assert default_data_dir() == REPO_ROOT / "data"
    monkeypatch.setenv("LESSONS_DATA_DIR", str(env_root))
    assert default_data_dir() == env_root
    args = lesson_args(DOC, ["--out", str(tmp_path / "o")], name="99_demo")
    assert args.data_dir == env_root
    args = lesson_args(DOC, ["--data-dir", str(flag_root), "--out", str(tmp_path / "o")], name="x")
    assert args.data_dir == flag_root


def test_offline_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("LESSONS_OFFLINE", "1")
    args = lesson_args(DOC, ["--out", str(tmp_path)], name="99_demo")
    assert args.offline is True


def test_lesson_specific_flags(monkeypatch, tmp_path):
    def configure(parser):
        parser.add_argument("--variant", choices=["small", "deep"], default="small")

    args = parse(["--variant", "deep"], monkeypatch, tmp_path, configure=configure)
    assert args.variant == "deep"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
        (["--epochs", "two"], "argument --epochs: expected a whole number, got 'two'"),
        (["--batch-size", "-4"], "argument --batch-size: must be at least 1, got -4"),
        (["--seed", "-1"], "argument --seed: must be 0 or more, got -1"),
        (["--seed", "x"], "argument --seed: expected a whole number, got 'x'"),
        (["--threads", "0"], "argument --threads: must be at least 1, got 0"),
        (["--device", "cuda:7"], "argument --device: device 'cuda:7' is not available"),
        (["--device", "toaster"], "'toaster' is not a device name"),
        (["--data-dir", "/no/such/folder"], "--data-dir: /no/such/folder is not a folder"),
        (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    ],
)
def test_bad_values_exit_2_with_one_line(argv, message, monkeypatch, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(argv, monkeypatch, tmp_path)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert message in error
    assert error.startswith("python lessons/99_demo.py: error:")


def test_help_shows_the_lesson_summary(monkeypatch, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(["--help"], monkeypatch, tmp_path)
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "Demo: a lesson used by the tests." in text
    assert "What you will learn" in text
    assert "--quick" in text and "--no-download" in text


def test_a_script_that_is_not_a_lesson_names_itself_and_can_drop_the_training_flags(
    monkeypatch, tmp_path, capsys
):
    """The benchmark: its own `prog`, and no --epochs / --batch-size (each recipe has its own)."""
    args = parse([], monkeypatch, tmp_path, prog="python benchmarks/demo.py", training_flags=False)
    assert not hasattr(args, "epochs") and not hasattr(args, "batch_size")
    with pytest.raises(SystemExit) as exit_info:
        parse(["--epochs", "3"], monkeypatch, tmp_path, prog="python benchmarks/demo.py",
              training_flags=False)  # fmt: skip
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("python benchmarks/demo.py: error: unrecognized arguments: --epochs")


def test_lesson_errors_print_one_line(capsys):
    _print_error_and_exit(LessonError, LessonError("data/x.csv: expected 12 columns"), None)
    _print_error_and_exit(KeyboardInterrupt, KeyboardInterrupt(), None)
    assert capsys.readouterr().err == "error: data/x.csv: expected 12 columns\ninterrupted\n"


def test_a_lesson_error_on_the_command_line_is_one_line_and_exit_1(tmp_path):
    script = tmp_path / "99_failing.py"
    script.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(REPO_ROOT / 'lessons')!r})\n"
        "from common import LessonError\n"
        "from common.cli import lesson_args\n"
        f"lesson_args(None, ['--out', {str(tmp_path / 'out')!r}], name='99_failing')\n"
        "raise LessonError('checkpoint.pt is truncated')\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, encoding="utf-8"
    )
    assert result.returncode == 1
    assert result.stderr == "error: checkpoint.pt is truncated\n"


def test_inside_jupyter_the_kernel_arguments_are_ignored(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ipykernel", sys.modules[__name__])
    monkeypatch.setattr(sys, "argv", ["ipykernel_launcher.py", "-f", "/tmp/kernel.json"])
    monkeypatch.setenv("LESSONS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LESSONS_OUT_ROOT", str(tmp_path / "outputs"))
    args = lesson_args(DOC, None, name="99_demo")
    assert args.quick is False
    assert args.out == tmp_path / "outputs" / "99_demo"


def test_lessons_quick_gives_a_quick_run_without_a_command_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ipykernel", sys.modules[__name__])
    monkeypatch.setenv("LESSONS_QUICK", "1")
    monkeypatch.setenv("LESSONS_DEVICE", "cpu")
    monkeypatch.setenv("LESSONS_OUT_ROOT", str(tmp_path))
    args = lesson_args(DOC, None, name="99_demo")
    assert args.quick is True and args.device == torch.device("cpu")


def test_threads_come_from_the_flag_the_environment_or_the_lesson(monkeypatch, tmp_path):
    before = torch.get_num_threads()
    try:
        assert parse([], monkeypatch, tmp_path, threads=1).threads == 1
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("LESSONS_THREADS", "2")
        assert parse([], monkeypatch, tmp_path, threads=1).threads == 2
        assert parse(["--threads", "1"], monkeypatch, tmp_path).threads == 1
        monkeypatch.delenv("LESSONS_THREADS")
        assert parse([], monkeypatch, tmp_path).threads is None  # torch's own default
    finally:
        torch.set_num_threads(before)


def test_bad_threads_in_the_environment_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LESSONS_THREADS", "many")
    with pytest.raises(SystemExit) as exit_info:
        parse([], monkeypatch, tmp_path)
    assert exit_info.value.code == 2
    assert "$LESSONS_THREADS: expected a whole number, got 'many'" in capsys.readouterr().err
