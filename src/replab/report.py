"""Executed notebooks -> ``reports/<paper>.html`` and ``reports/index.html``, readable offline.

Figures are embedded by nbconvert; MathJax is inlined from the copy fetched at setup; require.js and
Mermaid (CDN loads in nbconvert's default template) are left out.
"""

from __future__ import annotations

import html
import json
import logging
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

from .papers import PAPERS

log = logging.getLogger(__name__)

REPORTS = Path("reports")
METRICS = Path("metrics")


def _exporter():
    from nbconvert import HTMLExporter

    from .assets import mathjax_path

    templates = resources.files("replab") / "templates"
    return HTMLExporter(
        template_name="offline",
        extra_template_basedirs=[str(templates)],
        extra_template_paths=[str(mathjax_path().parent)],
    )


def render_notebook(notebook: Path, out: Path, exporter=None) -> Path:
    import nbformat

    exporter = exporter or _exporter()
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    _write_atomic(out, body)
    return out


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _target(item: dict) -> str:
    target = item.get("target")
    if target is None:
        return "—"
    met = item.get("met")
    return f"{target} ({'met' if met else 'missed'})" if met is not None else str(target)


def index_html(entries: list[tuple[str, dict | None]]) -> str:
    rows = []
    for key, metrics in entries:
        paper = PAPERS[key]
        link = f'<a href="{html.escape(key)}.html">{html.escape(paper.title)}</a>'
        if metrics is None:
            rows.append(f"<tr><td>{link}</td><td colspan=5><em>not run</em></td></tr>")
            continue
        scale = ", ".join(f"{k}={_fmt(v)}" for k, v in metrics.get("scale", {}).items())
        headline = metrics.get("headline", [])
        for i, item in enumerate(headline):
            first = f'<td rowspan="{len(headline)}">{link}<br><small>{html.escape(scale)}</small></td>' if i == 0 else ""
            rows.append(
                f"<tr>{first}<td>{html.escape(item['metric'])}</td><td>{_fmt(item.get('ours'))}</td>"
                f"<td>{html.escape(_fmt(item.get('paper')))}</td><td>{html.escape(_target(item))}</td>"
                f"<td>{html.escape(item.get('note', ''))}</td></tr>"
            )
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>replab reports</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border: 1px solid #ccc; padding: .35em .6em; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }} small {{ color: #666; }}
</style></head><body>
<h1>replab: papers reproduced</h1>
<p>Each row is one headline figure: ours as measured by this run (at the scale stated), beside the paper's
own number where it has one. Open a paper's report for the method, the figures and every number.</p>
<table><thead><tr><th>Paper (our scale)</th><th>Metric</th><th>Ours</th><th>Paper</th><th>Target</th><th>Note</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
<p><small>Rendered {stamp}.</small></p>
</body></html>
"""


def build(reports: Path = REPORTS, metrics: Path = METRICS, papers: list[str] | None = None) -> Path:
    """Render every executed notebook present and write the index."""
    exporter = None
    entries = []
    for key in papers or list(PAPERS):
        executed = reports / f"{key}.ipynb"
        metrics_file = metrics / f"{key}.json"
        if executed.exists():
            exporter = exporter or _exporter()
            render_notebook(executed, reports / f"{key}.html", exporter)
            log.info("rendered %s", reports / f"{key}.html")
        entries.append((key, json.loads(metrics_file.read_text()) if metrics_file.exists() else None))
    index = reports / "index.html"
    _write_atomic(index, index_html(entries))
    return index
