"""What keeps the course working on Windows and macOS as well as Linux, checked in the source.

Text read or written without `encoding=` uses the machine's locale (cp1252 on many Windows
laptops) and breaks on the lessons' ×, ≈ and on Chinese names; a child process read as text
needs the same. The GitHub workflow runs the course on all three systems; these checks catch the
mistake on any of them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO_ROOT

SOURCES = sorted(
    [*REPO_ROOT.glob("lessons/**/*.py"), *REPO_ROOT.glob("tests/*.py"), *REPO_ROOT.glob("*.py")]
)


def keywords(call: ast.Call) -> set[str]:
    return {keyword.arg for keyword in call.keywords}


def text_mode(call: ast.Call, mode_position: int) -> bool:
    """True unless the call's mode argument says binary ('rb', 'wb', ...)."""
    mode = call.args[mode_position] if len(call.args) > mode_position else None
    for keyword in call.keywords:
        if keyword.arg == "mode":
            mode = keyword.value
    if mode is None:
        return True
    return not (isinstance(mode, ast.Constant) and "b" in str(mode.value))


def problems(path: Path, root: Path = REPO_ROOT) -> list[str]:
    """`file:line: what` for every text read or write in `path` that names no encoding."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or "encoding" in keywords(node):
            continue
        function = node.func
        name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
        where = f"{path.relative_to(root)}:{node.lineno}"
        text_process = bool({"text", "universal_newlines"} & keywords(node))
        if name in ("read_text", "write_text") and isinstance(function, ast.Attribute):
            found.append(f"{where}: {name}() without encoding=")
        elif name == "open" and isinstance(function, ast.Name) and text_mode(node, 1):
            found.append(f"{where}: open() in text mode without encoding=")
        elif name in ("run", "Popen", "check_output") and text_process:
            found.append(f"{where}: subprocess.{name}(text=True) without encoding=")
    return found


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(REPO_ROOT)) for p in SOURCES])
def test_text_is_read_and_written_as_utf8(path):
    assert not problems(path)


def test_the_check_finds_what_it_looks_for(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "open('a.txt')\nopen('a.bin', 'rb')\nopen('a.txt', encoding='utf-8')\n"
        "p.read_text()\np.write_text('x', encoding='utf-8')\nread_text(p)\n"
        "subprocess.run(['x'], text=True)\nsubprocess.run(['x'], text=True, encoding='utf-8')\n",
        encoding="utf-8",
    )
    found = problems(sample, root=tmp_path)
    assert [line.split(":")[1] for line in found] == ["1", "4", "7"]


def test_posix_only_calls_have_a_fallback():
    """The runner stops a lesson's whole process group on POSIX and the process on Windows."""
    source = (REPO_ROOT / "run_lesson.py").read_text(encoding="utf-8")
    assert "os.killpg" in source and 'if os.name == "posix"' in source
    assert "process.terminate()" in source and 'start_new_session=(os.name == "posix")' in source
