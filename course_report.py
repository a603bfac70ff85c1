"""The course report as one web page: `python run_lesson.py --report course.html`.

One self-contained HTML file (figures embedded as data: URIs, styles inline, no scripts, no
network): the summary table (lesson, status, wall time, headline metric, a mark where stand-in
data replaced the real data, device, torch version), then one section per lesson with its key
metrics, its figures and a link to its executed notebook when `--notebook` made one. It reads on
a laptop screen and on a phone: the table scrolls sideways, figures shrink to the screen.
"""

from __future__ import annotations

import base64
import html
import json
import os
import time
from pathlib import Path

from common.settings import atomic_path

STYLE = """
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", "Noto Sans", sans-serif;
       margin: 0 auto; padding: 1rem; max-width: 70rem; color: #1d1d1f; background: #fff; }
h1 { font-size: 1.6rem; margin: 0.5rem 0; } h2 { font-size: 1.25rem; margin-top: 2.5rem; }
code { background: #f2f2f4; padding: 0.1rem 0.3rem; border-radius: 4px; font-size: 0.9em;
       overflow-wrap: anywhere; }
dd, figcaption, p { overflow-wrap: anywhere; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 0.95rem; }
th, td { text-align: left; padding: 0.4rem 0.6rem; border-bottom: 1px solid #ddd;
         vertical-align: top; }
th { background: #f6f6f8; white-space: nowrap; }
.ok { color: #1a7f37; font-weight: 600; } .bad { color: #c62828; font-weight: 600; }
.stand-in { background: #fff4ce; border-radius: 4px; padding: 0 0.3rem; font-size: 0.85em; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.85rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 0.2rem 1rem; }
dt { color: #555; } dd { margin: 0; font-variant-numeric: tabular-nums; }
"""
SKIP_METRICS = {"headline", "data", "stand_ins"}


def _fresh(path: Path, started: float) -> bool:
    """The file exists and was written by this run (not left over from an earlier one)."""
    return path.is_file() and path.stat().st_mtime >= started - 1


def _metrics(out_dir: Path, started: float) -> dict:
    path = out_dir / "metrics.json"
    if not _fresh(path, started):
        return {}
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return metrics if isinstance(metrics, dict) else {}


def _shown(value) -> str | None:
    """A metric as a short string, or None for what is too long to read in a table."""
    if isinstance(value, (bool, int)):
        return str(value)
    if isinstance(value, float):
        if 0 < abs(value) < 1e-3:  # a tiny difference, e.g. 3e-08, not 0.0000
            return f"{value:.2e}"
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.4g}"
    if isinstance(value, str) and len(value) <= 60:
        return value
    return None


def _image(path: Path) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    name = html.escape(path.name)
    return (
        f'<figure><img src="data:image/png;base64,{encoded}" alt="{name}" loading="lazy">'
        f"<figcaption>{name}</figcaption></figure>"
    )


def lesson_section(result, out_dir: Path, report_dir: Path) -> str:
    """One lesson: its key metrics, its figures and its notebook."""
    lesson = result.lesson
    metrics = _metrics(out_dir, result.started)
    parts = [f'<section id="{lesson.name}"><h2>{html.escape(lesson.name)}: '
             f"{html.escape(lesson.title)}</h2>"]  # fmt: skip
    if lesson.summary:
        parts.append(f"<p>{html.escape(lesson.summary[:1].upper() + lesson.summary[1:])}.</p>")
    shown = [(key, _shown(value)) for key, value in metrics.items() if key not in SKIP_METRICS]
    rows = [
        f"<dt>{html.escape(key)}</dt><dd>{html.escape(text)}</dd>" for key, text in shown if text
    ]
    if rows:
        parts.append("<dl>" + "".join(rows[:16]) + "</dl>")
    elif result.status != "ok":
        parts.append(f'<p class="bad">{html.escape("; ".join(result.notes) or result.status)}</p>')
    notebook = out_dir / f"{lesson.name}.ipynb"
    if _fresh(notebook, result.started):
        link = Path(os.path.relpath(notebook, report_dir)).as_posix()
        parts.append(
            f'<p>Executed notebook: <a href="{html.escape(link)}">{html.escape(link)}</a></p>'
        )
    figures = [path for path in sorted(out_dir.glob("*.png")) if _fresh(path, result.started)]
    parts += [_image(path) for path in figures]
    return "\n".join(parts) + "</section>"


def write_html(path: Path, results: list, out_root: Path, argv: list[str], environment: dict):
    """Write the course report for `results` (the runner's `Result`s) to `path`, atomically."""
    head = ["lesson", "status", "wall time", "headline metric", "data", "device", "torch"]
    rows = []
    for result in results:
        metrics = _metrics(out_root / result.lesson.name, result.started)
        status_class = "ok" if result.status == "ok" else "bad"
        headline = result.headline.replace(" (stand-in data)", "") or "; ".join(result.notes)
        cells = [
            f'<a href="#{result.lesson.name}">{html.escape(result.lesson.name)}</a>',
            f'<span class="{status_class}">{html.escape(result.status)}</span>',
            f"{result.seconds:.1f} s",
            html.escape(headline),
            '<span class="stand-in">stand-in data</span>'
            if metrics.get("data") == "stand-in"
            else "real",
            html.escape(environment.get("device", "?")),
            html.escape(environment.get("torch", "?")),
        ]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    passed = sum(result.status == "ok" for result in results)
    command = html.escape(" ".join(["python run_lesson.py", *argv]))
    where = ", ".join(f"{key} {html.escape(environment.get(key, '?'))}" for key in
                      ("device", "torch", "python"))  # fmt: skip
    sections = [lesson_section(r, out_root / r.lesson.name, path.parent) for r in results]
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Course report: {passed}/{len(results)} lessons ok</title>
<style>{STYLE}</style></head>
<body>
<h1>Course report: {passed}/{len(results)} lessons ok</h1>
<p><code>{command}</code> on {time.strftime("%Y-%m-%d %H:%M")}: {where}.</p>
<div class="scroll"><table>
<thead><tr>{"".join(f"<th>{name}</th>" for name in head)}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></div>
{chr(10).join(sections)}
</body></html>
"""
    with atomic_path(path) as temp_path:
        temp_path.write_text(page, encoding="utf-8")
