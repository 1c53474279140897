import json
import re
import shutil
import subprocess

import nbformat
import pytest

from replab import report
from replab.assets import mathjax_path


def executed_notebook(path):
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell(r"Energy $E = -\frac{c}{2}\nabla^2$ and $$H\phi = E\phi$$"),
            nbformat.v4.new_code_cell("1 + 1"),
        ]
    )
    nb.cells[1].outputs = [
        nbformat.v4.new_output("display_data", {"image/png": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="})
    ]
    nbformat.write(nb, path)


EXTERNAL = re.compile(r"""<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*["']?(https?:)?//""", re.I)


@pytest.fixture
def rendered(tmp_path):
    reports, metrics = tmp_path / "reports", tmp_path / "metrics"
    reports.mkdir()
    metrics.mkdir()
    executed_notebook(reports / "schrodinger_pca.ipynb")
    (metrics / "schrodinger_pca.json").write_text(json.dumps({
        "scale": {"profile": "tiny", "grid": "31x31"},
        "headline": [{"metric": "min overlap", "ours": 0.97123, "paper": "0.96–0.99", "target": ">= 0.95",
                      "met": True}],
    }))  # fmt: skip
    report.build(reports, metrics)
    return reports


def test_html_loads_nothing_from_the_network_and_inlines_mathjax(rendered):
    html = (rendered / "schrodinger_pca.html").read_text()
    assert not EXTERNAL.search(html), EXTERNAL.search(html).group(0)
    assert "@import url(http" not in html
    assert "require.min.js" not in html and "cdnjs" not in html.split("MathJax = {")[0]
    assert mathjax_path().read_text()[:2000] in html  # MathJax 3 is inlined, not linked
    assert "data:image/png;base64," in html  # figures embedded


def test_index_links_each_report_with_its_headline_metrics(rendered):
    index = (rendered / "index.html").read_text()
    assert 'href="schrodinger_pca.html"' in index
    assert "min overlap" in index and "0.971" in index and "0.96–0.99" in index and "profile=tiny" in index
    assert "&gt;= 0.95 (met)" in index
    assert not EXTERNAL.search(index)


def test_index_marks_papers_that_did_not_run(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "m").mkdir()
    report.build(tmp_path / "r", tmp_path / "m")
    assert "not run" in (tmp_path / "r" / "index.html").read_text()


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium not installed (CI installs it)")
def test_math_typesets_in_an_offline_browser(rendered, tmp_path):
    cmd = [
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
        "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=15000",
        "--dump-dom", (rendered / "schrodinger_pca.html").as_uri(),
    ]  # fmt: skip
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    assert "<mjx-container" in dom  # MathJax ran with the network unreachable
