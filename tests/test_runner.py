"""run_lesson.py: listing, the selection grammar, exit codes and the summary (throwaway lessons)."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
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
    (folder / filename).write_text(text, encoding="utf-8")


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
    (folder / "helpers.py").write_text("# not a lesson: no NN_ prefix\n", encoding="utf-8")
    return folder


def run(lessons: Path, *argv: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO_ROOT / "run_lesson.py"), *argv]
    command += ["--lessons-dir", str(lessons), "--out-root", str(lessons.parent / "outputs")]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, encoding="utf-8")


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
    argv = json.loads(
        (tmp_path / "outputs" / "01_tensors" / "argv.json").read_text(encoding="utf-8")
    )
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
    markdown = report.read_text(encoding="utf-8")
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
    (stale / "metrics.json").write_text(
        '{"accuracy": 1.0, "headline": "accuracy"}', encoding="utf-8"
    )
    result = run(lessons, "3")
    assert result.returncode == 1 and "no metrics.json" in result.stdout


def test_timeout(lessons):
    result = run(lessons, "sleepy", "--timeout", "1")
    assert result.returncode == 1
    assert "timed out" in result.stdout and "after 1 s" in result.stdout


@pytest.mark.skipif(os.name != "posix", reason="sends SIGINT, which is how Ctrl-C arrives")
def test_ctrl_c_stops_and_prints_the_summary_so_far(lessons):
    command = [sys.executable, str(REPO_ROOT / "run_lesson.py"), "1,9"]
    command += ["--lessons-dir", str(lessons), "--out-root", str(lessons.parent / "outputs")]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8"
    )
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


# --------------------------------------------------------------------------- notebooks
NOTEBOOK_LESSON = '''"""Notebook: a lesson in cells, for the runner.

Time: --quick ~1 s, full ~1 s.
"""

# %%
import json
import os
import shlex
from pathlib import Path

# %% [markdown]
# ## 1. A cell that prints

# %%
flags = shlex.split(os.environ.get("LESSONS_ARGS", ""))
out = Path(flags[flags.index("--out") + 1])
print("flags:", flags)
{second_cell}
'''
WRITES = """out.mkdir(parents=True, exist_ok=True)
(out / "metrics.json").write_text(json.dumps({"accuracy": 0.5, "headline": "accuracy"}))"""


def test_a_lesson_runs_as_an_executed_notebook(tmp_path):
    folder = tmp_path / "lessons"
    folder.mkdir()
    text = NOTEBOOK_LESSON.format(second_cell=WRITES)
    (folder / "01_notebook.py").write_text(text, encoding="utf-8")
    result = run(folder, "1", "--notebook", "--quick", "--seed", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    notebook = json.loads(
        (tmp_path / "outputs" / "01_notebook" / "01_notebook.ipynb").read_text(encoding="utf-8")
    )
    assert notebook["cells"][0]["cell_type"] == "markdown"  # the docstring, as the title
    assert "".join(notebook["cells"][0]["source"]).startswith("# Notebook: a lesson in cells")
    outputs = [out for cell in notebook["cells"] for out in cell.get("outputs", [])]
    printed = "".join("".join(out.get("text", "")) for out in outputs)
    assert "flags: ['--quick', '--seed', '3', '--out'" in printed
    assert re.search(r"01_notebook\s+ok\s+[\d.]+ s\s+accuracy=0\.5000", result.stdout)


def test_a_failing_cell_fails_the_lesson_with_its_error_line(tmp_path):
    folder = tmp_path / "lessons"
    folder.mkdir()
    text = NOTEBOOK_LESSON.format(second_cell="raise ValueError('the data is upside down')")
    (folder / "01_broken.py").write_text(text, encoding="utf-8")
    result = run(folder, "1", "--notebook")
    assert result.returncode == 1 and "Traceback" not in result.stdout
    assert re.search(r"01_broken\s+failed .*cell 4 failed: ValueError: the data is upside down",
                     result.stdout)  # fmt: skip
    assert (tmp_path / "outputs" / "01_broken" / "01_broken.ipynb").is_file()  # kept, to read


def test_a_real_lesson_as_a_notebook(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "run_lesson.py"), "4", "--notebook", "--quick",
         "--device", "cpu", "--out-root", str(tmp_path)],
        capture_output=True, text=True, timeout=300, encoding="utf-8"
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    notebook = json.loads(
        (tmp_path / "04_autograd" / "04_autograd.ipynb").read_text(encoding="utf-8")
    )
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    assert all(cell["outputs"] for cell in code if run_lesson.GUARD in "".join(cell["source"]))
    assert (tmp_path / "04_autograd" / "metrics.json").is_file()


# --------------------------------------------------------------------------- the HTML report
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f80f00000101000518d84e0000000049454e44ae426082"
)
FIGURE_LESSON = """
out.mkdir(parents=True, exist_ok=True)
(out / "curve.png").write_bytes(bytes.fromhex({png!r}))
metrics = {{"accuracy": 0.875, "headline": "accuracy", "data": "stand-in", "loss_history": [1, 2]}}
(out / "metrics.json").write_text(json.dumps(metrics))
"""


@pytest.fixture
def html_report(lessons, tmp_path) -> Path:
    write_lesson(lessons, "04_figure.py", "Figures", FIGURE_LESSON.format(png=PNG.hex()))
    report = tmp_path / "reports" / "course.html"
    result = run(lessons, "1,2,4", "--report", str(report), "--report", str(tmp_path / "r.md"))
    assert result.returncode == 1  # 02 fails on purpose
    assert f"wrote {report}" in result.stdout and (tmp_path / "r.md").is_file()
    return report


def test_the_html_report_is_one_self_contained_page(html_report):
    page = html_report.read_text(encoding="utf-8")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "<title>Course report: 2/3 lessons ok</title>" in page
    assert not re.search(r"""(src|href)=["'](https?:)?//""", page), "no network needed"
    assert "<script" not in page
    rows = re.findall(r"<tr><td>(.*?)</td></tr>", page)
    assert len(rows) == 3
    assert "04_figure" in rows[2] and "stand-in data" in rows[2] and "accuracy=0.8750" in rows[2]
    assert "failed" in rows[1] and "exit status 3" in rows[1]
    assert "cpu" in rows[0] and "torch" not in rows[0]  # device and version have their columns
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert [base64.b64decode(image) for image in images] == [PNG]
    assert "<dt>accuracy</dt><dd>0.8750</dd>" in page and "loss_history" not in page


@pytest.mark.skipif(
    shutil.which("chromium") is None and os.environ.get("LESSONS_BROWSER_TESTS_MUST_RUN") != "1",
    reason="chromium is not on this machine (.ci/run installs it)",
)
def test_the_html_report_renders_in_chromium_with_every_image(html_report, tmp_path):
    """Headless Chromium loads the page from disk, offline; a probe script copied in counts the
    images that did not load (the report itself has no script)."""
    probe = tmp_path / "probe.html"
    script = """<script>window.addEventListener("load", () => {
      const images = [...document.images];
      document.body.dataset.images = images.length;
      document.body.dataset.broken = images.filter(i => !i.complete || !i.naturalWidth).length;
      document.body.dataset.width = document.documentElement.scrollWidth;
      document.body.dataset.screen = window.innerWidth;
    });</script></body>"""
    probe.write_text(html_report.read_text(encoding="utf-8").replace("</body>", script),
                     encoding="utf-8")  # fmt: skip
    for width in (1280, 500):  # a laptop, and a phone (headless Chromium is 500 px or wider)
        dom = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},900",
             "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
            capture_output=True, text=True, timeout=120, encoding="utf-8"
        ).stdout  # fmt: skip
        body = re.search(r"<body ([^>]*)>", dom).group(1)
        assert 'data-images="1"' in body and 'data-broken="0"' in body, body
        page, screen = (
            int(re.search(rf'data-{key}="(\d+)"', body).group(1)) for key in ("width", "screen")
        )
        assert page <= screen, "the page itself fits the screen; only the table scrolls"


@pytest.mark.parametrize(
    "value, shown",
    [(0.91234, "0.9123"), (2.98e-08, "2.98e-08"), (0.0, "0.0000"), (15.36, "15.3600")],
)
def test_the_headline_shows_a_tiny_difference_in_e_notation(tmp_path, value, shown):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"headline": "difference", "difference": value}), encoding="utf-8")
    assert run_lesson.headline_of(path, started=0) == f"difference={shown}"
