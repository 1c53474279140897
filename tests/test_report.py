import re
import sys

import nbformat
import pytest

from replab import claims, report
from replab.assets import mathjax_path
from replab.claims import PaperResults, PaperValue, claim
from replab.measure import Spread, machine

from . import browser
from .conftest import ROOT

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
EXTERNAL = re.compile(r"""<(script|link|img|iframe)\b[^>]*\b(src|href)\s*=\s*["']?(https?:)?//""", re.I)


def executed_notebook(path):
    """What papermill leaves: the default parameters cell, the injected one, outputs with stderr."""
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell(r"Energy $E = -\frac{c}{2}\nabla^2$ and $$H\phi = E\phi$$"),
            nbformat.v4.new_code_cell("anchor_spacing = 6", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell("anchor_spacing = 4", metadata={"tags": ["injected-parameters"]}),
            nbformat.v4.new_code_cell("1 + 1"),
        ]
    )
    nb.metadata["papermill"] = {"parameters": {"profile": "tiny", "anchor_spacing": 4}}
    nb.cells[3].outputs = [
        nbformat.v4.new_output("display_data", {"image/png": PNG}),
        nbformat.v4.new_output("stream", name="stderr", text=f"{sys.prefix}/lib/tqdm.py:1: TqdmWarning: IProgress\n"),
    ]
    nbformat.write(nb, path)


def results():
    return PaperResults(
        paper="schrodinger_pca",
        profile="tiny",
        scale={"grid": "31x31"},
        params={"anchor_spacing": 4},
        claims=[
            claim("spca_min_overlap", "min overlap", 0.97123, scale="31x31 grid", method="paper", target=(">=", 0.95)),
            claim(
                "coarse_max",
                "coarse max overlap",
                0.9,
                scale="31x31 grid",
                method="paper",
                target=("<=", 0.85),
                reason="at its floor",
            ),
            claim(
                "levels",
                "degeneracies",
                [1, 2, 3, 4],
                scale="grid",
                method="paper",
                target=("==", [1, 2, 3, 4]),
                paper=PaperValue(value=[1, 2, 3, 4], source="Sec. 3 (analytic)"),
            ),
            claim(
                "speed",
                "speed-up",
                2.5,
                unit="x",
                scale="s",
                method="reconstruction",
                timing=True,
                machine=machine(),
                spread=Spread.of([2.4, 2.5, 2.6]),
            ),
        ],
    )


@pytest.fixture
def rendered(tmp_path):
    reports, metrics = tmp_path / "reports", tmp_path / "metrics"
    reports.mkdir()
    executed_notebook(reports / "schrodinger_pca.ipynb")
    claims.save(results(), metrics)
    (reports / "figures" / "schrodinger_pca").mkdir(parents=True)
    import base64

    (reports / "figures/schrodinger_pca/overlap_and_spectrum.png").write_bytes(base64.b64decode(PNG))
    report.build(reports, metrics)
    return reports


def test_html_loads_nothing_from_the_network_and_inlines_mathjax(rendered):
    html = (rendered / "schrodinger_pca.html").read_text()
    assert not EXTERNAL.search(html), EXTERNAL.search(html).group(0)
    assert "@import url(http" not in html
    assert "require.min.js" not in html and "cdnjs" not in html.split("MathJax = {")[0]
    assert mathjax_path().read_text()[:2000] in html  # MathJax 3 is inlined, not linked
    assert "data:image/png;base64," in html  # figures embedded


def test_report_shows_the_parameters_once_and_no_stderr(rendered):
    html = (rendered / "schrodinger_pca.html").read_text()
    assert "Parameters of this run" in html and "anchor_spacing = 6" not in html and "anchor_spacing = 4" not in html
    assert html.count("<code>anchor_spacing</code>") == 1
    for leak in ("TqdmWarning", "Traceback", sys.prefix, str(ROOT), "/root/", "/home/"):
        assert leak not in html, leak


def test_index_shows_each_claim_with_its_source_target_and_verdict(rendered):
    index = (rendered / "index.html").read_text()
    assert 'href="schrodinger_pca.html"' in index
    assert "min overlap" in index and "0.971" in index and "&gt;= 0.95" in index
    assert "Sec. 3 (analytic)" in index and "MISSED" in index and "v-missed" in index
    assert "at its floor" in index  # what a miss means is shown beside it
    assert "1 missed" in index and "31x31" in index
    assert "range 2.4–2.6, n = 3" in index and "torch" in index  # timing claims carry spread and machine
    assert "data:image/png;base64," in index  # the key figure
    assert "Not run yet" in index  # pac and accept have no claims here
    assert not EXTERNAL.search(index)
    assert "Rendered" not in index  # no render time: the page is a function of its inputs


def test_readme_block_is_generated_from_the_claims(tmp_path):
    claims.save(results(), tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.README_BEGIN}\nstale\n{report.README_END}\nrest\n")
    assert report.update_readme(readme, tmp_path) is True
    text = readme.read_text()
    assert "| min overlap | 0.971 |" in text and "**MISSED** (at its floor)" in text and text.endswith("rest\n")
    assert report.update_readme(readme, tmp_path, check=True) is False


def test_readme_bench_blocks_paste_the_committed_benchmark_output(tmp_path):
    claims.save(results(), tmp_path)
    (tmp_path / "bench.md").write_text("| case | time |\n|---|---|\n| a | 1.0 |")
    readme = tmp_path / "README.md"
    block = "<!-- bench:begin bench.md -->\nold table\n<!-- bench:end -->"
    readme.write_text(f"{report.README_BEGIN}\n{report.README_END}\n{block}\ntail\n")
    assert report.update_readme(readme, tmp_path) is True
    text = readme.read_text()
    assert "old table" not in text and "| a | 1.0 |\n<!-- bench:end -->\ntail\n" in text
    assert report.update_readme(readme, tmp_path, check=True) is False
    (tmp_path / "bench.md").write_text("| a | 2.0 |\n")
    assert report.update_readme(readme, tmp_path, check=True) is True  # a new benchmark output makes it stale
    readme.write_text(f"{report.README_BEGIN}\n{report.README_END}\n<!-- bench:begin gone.md -->\n<!-- bench:end -->\n")
    with pytest.raises(ValueError, match="gone.md"):
        report.update_readme(readme, tmp_path)


def test_committed_readme_agrees_with_the_committed_claims():
    assert not report.update_readme(ROOT / "README.md", ROOT / "metrics", check=True), (
        "README results differ from metrics/*.claims.json: run `replab report --readme`"
    )


@pytest.mark.skipif(not browser.available(), reason="Debian chromium not installed (CI installs it)")
def test_reports_in_an_offline_browser(rendered):
    artifacts = ROOT / "build" / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    page = browser.check_page(rendered / "schrodinger_pca.html", artifacts / "report.png", wait_for="mjx-container")
    assert page.failed == [] and page.images >= 1 and "<mjx-container" in page.dom  # math typeset offline
    index = browser.check_page(rendered / "index.html", artifacts / "index.png")
    assert index.failed == [] and index.console_errors == [] and index.images == 1
    assert index.requests == [(rendered / "index.html").as_uri()]
    assert (artifacts / "index.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
