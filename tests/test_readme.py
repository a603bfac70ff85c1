"""README.md and its Chinese translation README.zh-CN.md say the same things.

Both files must link to each other, show the same commands in the same order, list the same
lessons (the ones in lessons/NN_*.py), keep the same results, and the Chinese one must really be
Chinese, written with the source notes' own terms. Each check is a plain function of the two
texts, so the last tests can feed it a broken copy and see it fail.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO_ROOT, lesson_paths

README_EN = REPO_ROOT / "README.md"
README_ZH = REPO_ROOT / "README.zh-CN.md"

# The source notes' Chinese terms a student of them will look for.
NOTES_TERMS = ("张量", "自动求导", "卷积神经网络", "循环神经网络", "计算图", "梯度下降", "过拟合")
MIN_CJK_CHARS = 1500

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
LESSON_ROW = re.compile(r"^\|\s*(\d{2})\s*\|([^|]*)\|", re.MULTILINE)
RESULT_ROW = re.compile(r"^\|\s*(\d{2})\s+[^|\s][^|]*\|.*$", re.MULTILINE)
BENCHMARK_ROW = re.compile(r"^\|\s*([a-z0-9]+-[a-z0-9]+)\s*\|(.*)$", re.MULTILINE)  # fashion-mlp
NUMBER = re.compile(r"\d[\d,.]*")
CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


# --- what the checks compare -------------------------------------------------------------------


def fenced_blocks(text: str, language: str) -> list[str]:
    """The bodies of the ``` blocks whose info string is `language` ("" for plain blocks)."""
    return [body for info, body in FENCE.findall(text) if info.strip() == language]


def bash_commands(text: str) -> list[str]:
    """Every command line of the ```bash blocks, in order: comments and blank lines dropped."""
    commands = []
    for block in fenced_blocks(text, "bash"):
        for line in block.splitlines():
            if line.lstrip().startswith("#"):
                continue
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command:
                commands.append(command)
    return commands


def layout_paths(text: str) -> list[str]:
    """The first word of each line of the plain ``` blocks (the project layout's paths)."""
    return [line.split()[0] for block in fenced_blocks(text, "") for line in block.splitlines()]


def prose(text: str) -> str:
    """The text outside fenced blocks."""
    return FENCE.sub("", text)


def inline_commands(text: str) -> set[str]:
    """Every `python ...` / `pip ...` in backticks outside fenced blocks, whitespace collapsed."""
    spans = (" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose(text)))
    return {span for span in spans if span.startswith(("python ", "pip "))}


def lesson_rows(text: str) -> list[tuple[str, str]]:
    """(number, topic) of each row of the lessons table."""
    return [(number, topic.strip()) for number, topic in LESSON_ROW.findall(text)]


def result_rows(text: str) -> list[tuple[str, list[str]]]:
    """(lesson number, the numbers in the value and wall-time columns) of each results row."""
    rows = []
    for match in RESULT_ROW.finditer(text):
        cells = [cell.strip() for cell in match.group(0).strip().strip("|").split("|")]
        rows.append((match.group(1), NUMBER.findall(" ".join(cells[3:]))))
    return rows


def benchmark_rows(text: str) -> list[tuple[str, list[str]]]:
    """(task, the numbers of its measured columns) of the benchmark's table; the two recipe
    columns are prose, written in each language."""
    rows = []
    for task, rest in BENCHMARK_ROW.findall(text):
        cells = [cell.strip() for cell in rest.strip().strip("|").split("|")]
        measured = cells[1:3] + cells[4:]  # skip the notes' and the course's recipe
        rows.append((task, NUMBER.findall(" ".join(measured))))
    return rows


def headings(text: str) -> list[str]:
    return [line for line in prose(text).splitlines() if line.startswith("#")]


# --- the checks, each a function of the two texts ----------------------------------------------


def check_links(en: str, zh: str) -> None:
    assert en.splitlines()[0] == "[简体中文](README.zh-CN.md) | English"
    assert zh.splitlines()[0] == "[English](README.md) | 简体中文"


def check_commands(en: str, zh: str) -> None:
    assert bash_commands(en), "README.md shows no ```bash commands"
    assert bash_commands(zh) == bash_commands(en)


def check_layout(en: str, zh: str) -> None:
    assert layout_paths(zh) == layout_paths(en)


def check_inline_commands(en: str, zh: str) -> None:
    assert inline_commands(en), "README.md has no inline python/pip commands"
    missing = inline_commands(en) - inline_commands(zh)
    assert not missing, f"README.zh-CN.md lacks {sorted(missing)}"


def check_lessons(en: str, zh: str) -> None:
    on_disk = [path.name[:2] for path in lesson_paths()]
    numbers_en = [number for number, _ in lesson_rows(en)]
    numbers_zh = [number for number, _ in lesson_rows(zh)]
    assert numbers_en == on_disk, "README.md's lessons table differs from lessons/NN_*.py"
    assert numbers_zh == on_disk, "README.zh-CN.md's lessons table differs from lessons/NN_*.py"
    # The Chinese row keeps the English topic, so the two tables can be read side by side.
    for (number, topic), (_, topic_zh) in zip(lesson_rows(en), lesson_rows(zh)):
        assert topic in topic_zh, f"lesson {number}: {topic!r} is not in {topic_zh!r}"


def check_results(en: str, zh: str) -> None:
    assert result_rows(en), "README.md has no results table"
    assert result_rows(zh) == result_rows(en)


def check_benchmark(en: str, zh: str) -> None:
    assert len(benchmark_rows(en)) == 5, "README.md's benchmark table should have its 5 tasks"
    assert benchmark_rows(zh) == benchmark_rows(en)


def check_sections(en: str, zh: str) -> None:
    assert [h.split()[0] for h in headings(zh)] == [h.split()[0] for h in headings(en)]
    assert prose(zh).count("**") == prose(en).count("**"), "bold paragraph leads differ"


def check_chinese(en: str, zh: str) -> None:
    text = prose(zh)
    assert len(CJK.findall(text)) >= MIN_CJK_CHARS
    # Mostly Chinese: more CJK characters than English words outside the code.
    words = re.findall(r"[A-Za-z]{2,}", re.sub(r"`[^`]*`", "", text))
    assert len(CJK.findall(text)) > 2 * len(words)
    missing = [term for term in NOTES_TERMS if term not in text]
    assert not missing, f"README.zh-CN.md does not use the notes' terms {missing}"


CHECKS = [
    check_links,
    check_commands,
    check_layout,
    check_inline_commands,
    check_lessons,
    check_results,
    check_benchmark,
    check_sections,
    check_chinese,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_readmes_agree(check):
    check(read(README_EN), read(README_ZH))


def test_readme_links_resolve():
    for text in (read(README_EN), read(README_ZH)):
        for target in re.findall(r"\]\(([^)#:]+)\)", text):
            assert (REPO_ROOT / target).exists(), target


# --- the checks can fail -----------------------------------------------------------------------


def _drop_line(text: str, start: str) -> str:
    lines = text.splitlines(keepends=True)
    index = next(i for i, line in enumerate(lines) if line.startswith(start))
    return "".join(lines[:index] + lines[index + 1 :])


def _swap_lines(text: str, first: str, second: str) -> str:
    lines = text.splitlines(keepends=True)
    i = next(i for i, line in enumerate(lines) if line.startswith(first))
    j = next(j for j, line in enumerate(lines) if line.startswith(second))
    lines[i], lines[j] = lines[j], lines[i]
    return "".join(lines)


BREAKAGES = {
    "no link back": (check_links, lambda zh: zh.replace("[English](README.md)", "English", 1)),
    "a command dropped": (
        check_commands,
        lambda zh: _drop_line(zh, "python run_lesson.py 3-7"),
    ),
    "commands reordered": (
        check_commands,
        lambda zh: _swap_lines(zh, "python run_lesson.py 3 ", "python run_lesson.py --list"),
    ),
    "a command changed": (check_commands, lambda zh: zh.replace("--fail-fast", "--fail_fast", 1)),
    "a layout path dropped": (check_layout, lambda zh: _drop_line(zh, "course_report.py")),
    "an inline command changed": (
        check_inline_commands,
        lambda zh: zh.replace("pip install jupyterlab", "pip install notebook", 1),
    ),
    "a lesson row dropped": (check_lessons, lambda zh: _drop_line(zh, "| 09 |")),
    "a lesson's name lost": (check_lessons, lambda zh: zh.replace("（Autograd）", "", 1)),
    "a result changed": (check_results, lambda zh: zh.replace("| 0.919 |", "| 0.92 |", 1)),
    "a benchmark number changed": (
        check_benchmark,
        lambda zh: zh.replace("| 0.529 | 112 s |", "| 0.529 | 121 s |", 1),
    ),
    "a section dropped": (check_sections, lambda zh: zh.replace("## 出错时会怎样", "", 1)),
    "left in English": (check_chinese, lambda zh: re.sub(r"[\u4e00-\u9fff]+", "text", zh)),
    "a notes' term replaced": (check_chinese, lambda zh: zh.replace("自动求导", "Autograd")),
}


@pytest.mark.parametrize("name", BREAKAGES)
def test_checks_catch_a_broken_translation(name, tmp_path):
    check, breakage = BREAKAGES[name]
    en, zh = read(README_EN), read(README_ZH)
    broken = tmp_path / "README.zh-CN.md"
    broken.write_text(breakage(zh), encoding="utf-8")
    assert read(broken) != zh, f"the breakage {name!r} changed nothing"
    with pytest.raises(AssertionError):
        check(en, read(broken))


def test_checks_catch_a_lesson_missing_from_the_english_table():
    en, zh = read(README_EN), read(README_ZH)
    with pytest.raises(AssertionError):
        check_lessons(_drop_line(en, "| 15 |"), zh)
