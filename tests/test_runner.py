"""run_lesson.py: listing, the selection grammar, exit codes and the summary (throwaway lessons)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
import run_lesson

LESSON_TEMPLATE = '''"""{title}: {summary}.

Time: --quick ~1 s, full ~2 min on a 2-core CPU.
"""
import json, sys, time
from pathlib import Path

out = Path(sys.argv[sys.argv.index("--out") + 1])
{body}
'''

WRITES_METRICS = """
out.mkdir(parents=True, exist_ok=True)
(out / "metrics.json").write_text(json.dumps({"accuracy": 0.91234, "headline": "accuracy"}))
(out / "argv.json").write_text(json.dumps(sys.argv[1:]))
"""


def write_lesson(folder: Path, filename: str, title: str, body: str) -> None:
    text = LESSON_TEMPLATE.format(title=title, summary=f"what {title} teaches", body=body)
    (folder / filename).write_text(text)


@pytest.fixture
def lessons(tmp_path) -> Path:
    folder = tmp_path / "lessons"
    folder.mkdir()
    write_lesson(folder, "01_tensors.py", "Tensors", WRITES_METRICS)
    write_lesson(folder, "02_fails.py", "Failing", "sys.exit(3)")
    write_lesson(folder, "03_no_metrics.py", "Silent", "print('ran, wrote nothing')")
    write_lesson(folder, "07_cnn.py", "Convolutional networks", WRITES_METRICS)
    write_lesson(folder, "08_cnn_architectures.py", "CNN architectures", WRITES_METRICS)
    # Like a real lesson, it turns Ctrl-C into one line instead of a traceback.
    sleepy = "try:\n    time.sleep(30)\nexcept KeyboardInterrupt:\n    sys.exit('interrupted')"
    write_lesson(folder, "09_sleepy.py", "Sleepy", sleepy)
    (folder / "helpers.py").write_text("# not a lesson: no NN_ prefix\n")
    return folder


def run(lessons: Path, *argv: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO_ROOT / "run_lesson.py"), *argv]
    command += ["--lessons-dir", str(lessons), "--out-root", str(lessons.parent / "outputs")]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_discovery_reads_titles_and_durations(lessons):
    found = run_lesson.discover(lessons)
    assert [lesson.number for lesson in found] == [1, 2, 3, 7, 8, 9]
    first = found[0]
    assert (first.title, first.summary) == ("Tensors", "what Tensors teaches")
    assert (first.quick_time, first.full_time) == ("1 s", "2 min")


@pytest.mark.parametrize(
    ("selection", "numbers"),
    [
        ([], [1, 2, 3, 7, 8, 9]),
        (["3"], [3]),
        (["03"], [3]),
        (["2-7"], [2, 3, 7]),
        (["7-2"], [2, 3, 7]),
        (["1,3,9"], [1, 3, 9]),
        (["cnn"], [7, 8]),
        (["CNN"], [7, 8]),
        (["architectures"], [8]),
        (["9", "1"], [1, 9]),
        (["1,1", "1-2"], [1, 2]),
    ],
)
def test_selection_grammar(lessons, selection, numbers):
    chosen = run_lesson.select(run_lesson.discover(lessons), selection)
    assert [lesson.number for lesson in chosen] == numbers


@pytest.mark.parametrize("selection", ["42", "10-20", "transformer", "1,42"])
def test_unknown_selection_is_an_error(lessons, selection):
    with pytest.raises(run_lesson.SelectionError, match="no lesson matches"):
        run_lesson.select(run_lesson.discover(lessons), [selection])


def test_list(lessons):
    result = run(lessons, "--list")
    assert result.returncode == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["#", "lesson", "what", "you", "learn", "--quick", "full"]
    assert lines[2].split()[:2] == ["01", "Tensors"]
    assert "1 s" in lines[2] and "2 min" in lines[2]
    assert len(lines) == 2 + 6


def test_unknown_lesson_exits_2_with_the_list_and_no_traceback(lessons):
    result = run(lessons, "42")
    assert result.returncode == 2
    assert result.stderr.startswith("error: no lesson matches '42'. The lessons are:")
    assert "07  Convolutional networks" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
        (["--timeout", "soon"], "argument --timeout: expected a number, got 'soon'"),
        (["--data-dir", "/no/such/dir"], "argument --data-dir: /no/such/dir is not a folder"),
        (["--device", "cuda:9"], "argument --device: device 'cuda:9' is not available"),
    ],
)
def test_bad_flags_exit_2_with_one_line(lessons, argv, message):
    result = run(lessons, "1", *argv)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_a_successful_lesson_gets_the_flags_and_a_summary(lessons, tmp_path):
    result = run(lessons, "1", "--quick", "--device", "cpu", "--epochs", "2", "--seed", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.split("lesson ", 1)[1]
    assert "01_tensors" in summary and "ok" in summary and "accuracy=0.9123" in summary
    assert "1/1 lessons ok" in result.stdout
    argv = json.loads((tmp_path / "outputs" / "01_tensors" / "argv.json").read_text())
    assert argv[:7] == ["--quick", "--device", "cpu", "--epochs", "2", "--seed", "3"]


def test_failures_are_reported_and_the_run_goes_on(lessons, tmp_path):
    report = tmp_path / "report.md"
    result = run(lessons, "1-3,7", "--report", str(report))
    assert result.returncode == 1
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line[:2].isdigit()}
    assert " ok " in rows["01_tensors"] and " ok " in rows["07_cnn"]
    assert "failed" in rows["02_fails"] and "exit status 3" in rows["02_fails"]
    assert "failed" in rows["03_no_metrics"] and "no metrics.json" in rows["03_no_metrics"]
    assert "2/4 lessons ok" in result.stdout
    markdown = report.read_text()
    assert "| lesson | status | wall time | headline metric |" in markdown
    assert "| 02_fails | failed |" in markdown


def test_fail_fast_stops_at_the_first_failure(lessons):
    result = run(lessons, "1-3", "--fail-fast")
    assert result.returncode == 1
    assert "02_fails" in result.stdout and "03_no_metrics" not in result.stdout
    assert "stopping after 02_fails failed (--fail-fast)" in result.stdout


def test_stale_metrics_do_not_count(lessons, tmp_path):
    stale = tmp_path / "outputs" / "03_no_metrics"
    stale.mkdir(parents=True)
    (stale / "metrics.json").write_text('{"accuracy": 1.0, "headline": "accuracy"}')
    result = run(lessons, "3")
    assert result.returncode == 1 and "no metrics.json" in result.stdout


def test_timeout(lessons):
    result = run(lessons, "sleepy", "--timeout", "1")
    assert result.returncode == 1
    assert "timed out" in result.stdout and "after 1 s" in result.stdout


def test_ctrl_c_stops_and_prints_the_summary_so_far(lessons):
    command = [sys.executable, str(REPO_ROOT / "run_lesson.py"), "1,9"]
    command += ["--lessons-dir", str(lessons), "--out-root", str(lessons.parent / "outputs")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)  # lesson 01 finishes, lesson 09 sleeps
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "01_tensors" in stdout and "interrupted" in stdout
    assert "Traceback" not in stderr


def test_the_real_lesson_list_is_complete():
    """Every lesson in the repository has a title, a summary and typical durations."""
    for lesson in run_lesson.discover(REPO_ROOT / "lessons"):
        assert lesson.title and lesson.summary, lesson.name
        assert lesson.quick_time != "?" and lesson.full_time != "?", lesson.name
