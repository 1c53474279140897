"""The whole pipeline on the tiny profile, in a fresh copy of the project."""

import hashlib
import json
import re
import sys
import time

import nbformat
import pytest

from replab import claims
from replab.papers import PAPERS

from . import browser
from .conftest import ROOT, copy_project, run, tiny_copy

pytestmark = pytest.mark.slow


def digest(folder, patterns):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for pattern in patterns
        for p in sorted(folder.glob(pattern))
        if p.is_file()
    }


DETERMINISTIC = ["metrics/*.json", "metrics/plots/*/*.csv", "models/*/*"]


@pytest.fixture(scope="module")
def repro(tmp_path_factory):
    """One `dvc repro` of everything on the tiny profile (shared by the tests below, which do not modify it)."""
    project = tiny_copy(tmp_path_factory.mktemp("e2e") / "project")
    first = run(["dvc", "repro"], project)
    return project, first


def test_repro_writes_claims_metrics_plots_and_reports(repro):
    project, first = repro
    for key in PAPERS:
        results = claims.load(project / f"metrics/{key}.claims.json")
        assert results.profile == "tiny" and results.params["profile"] == "tiny"
        assert all(c.verdict in ("met", "missed", "n/a") for c in results.claims)
        assert (project / f"reports/{key}.html").exists() and list((project / f"reports/figures/{key}").glob("*.png"))
        scalars = json.loads((project / f"metrics/{key}.json").read_text())
        assert all(isinstance(v, (int, float)) for v in scalars.values()), scalars  # top level, scalars only
    spca = claims.load(project / "metrics/schrodinger_pca.claims.json")
    assert spca.get("oscillator_degeneracies").verdict == "met"  # computed, not just present
    assert (project / "models/pac/dpac_digits.safetensors").exists()
    assert "Running stage 'schrodinger_pca'" in first.stdout
    # Progress and durations reach the terminal, not the report.
    assert "schrodinger_pca: spacing sweep" in first.stderr and "schrodinger_pca: done in" in first.stderr
    for key in PAPERS:
        html = re.sub(r"<script\b.*?</script>", "", (project / f"reports/{key}.html").read_text(), flags=re.S)
        for leak in ("it/s]", "Traceback", "Warning:", str(project), sys.prefix, "/root/", "/home/", ".staging-"):
            assert leak not in html, (key, leak)
        assert html.count("Parameters of this run") == 1, key
        executed = nbformat.read(project / f"reports/{key}.ipynb", as_version=4)
        streams = [o.name for c in executed.cells if c.cell_type == "code" for o in c.outputs if "name" in o]
        assert "stderr" not in streams, key  # progress went to the terminal, not into the published notebook


@pytest.mark.skipif(not browser.available(), reason="Debian chromium not installed (CI installs it)")
def test_the_real_index_opens_offline(repro):
    project, _ = repro
    artifacts = ROOT / "build" / "test-artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    page = browser.check_page(project / "reports/index.html", artifacts / "e2e-index.png")
    assert page.failed == [] and page.console_errors == []
    assert page.images == len(PAPERS)  # each paper's key figure
    report = browser.check_page(project / "reports/accept.html", artifacts / "e2e-accept.png", wait_for="img")
    assert report.failed == [] and report.images >= 3


def test_dvc_tools_show_the_headlines_and_curves(repro):
    project, _ = repro
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project).stdout)[""]["data"]
    assert "spca_min_overlap" in shown["metrics/schrodinger_pca.json"]["data"]
    assert "codec_vs_copy_cpu" in shown["metrics/accept.timing.json"]["data"]
    table = run(["dvc", "exp", "show", "--no-pager", "--csv"], project).stdout
    assert "spca_min_overlap" in table.splitlines()[0] and "final_loss_ratio" in table.splitlines()[0]
    plots = json.loads(run(["dvc", "plots", "diff", "--json"], project).stdout)["data"]
    for key, paper in PAPERS.items():
        for plot in paper.plots:
            (rendered,) = plots[f"{key}/{plot.name}"]
            assert rendered["content"]["data"]["values"], f"{key}/{plot.name} has no points"


def test_noop_then_stripped_notebook_then_force_is_byte_identical(repro):
    project, _ = repro
    second = run(["dvc", "repro"], project)
    assert "Running stage" not in second.stdout, second.stdout
    assert run(["dvc", "status"], project).stdout.strip().endswith("up to date.")

    # Saving the notebook with outputs must not make the paper stage stale (it depends on the stripped copy).
    nb_path = project / "notebooks/schrodinger_pca.ipynb"
    original = nb_path.read_bytes()
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="hello")]
    nb.cells[1].execution_count = 1
    nbformat.write(nb, nb_path)
    third = run(["dvc", "repro"], project)
    assert "Running stage 'schrodinger_pca'" not in third.stdout
    nb_path.write_bytes(original)

    # The quickest paper here; every paper in the exhaustive test below.
    assert_force_rerun_is_byte_identical(project, ["schrodinger_pca"])


@pytest.mark.exhaustive
def test_every_paper_reruns_byte_identical(repro):
    project, _ = repro
    assert_force_rerun_is_byte_identical(project, [k for k in PAPERS if k != "schrodinger_pca"])


def assert_force_rerun_is_byte_identical(project, papers):
    before = digest(project, DETERMINISTIC)
    before_json = {f"metrics/{k}.json": json.loads((project / f"metrics/{k}.json").read_text()) for k in papers}
    deterministic_claims = {
        k: claims.deterministic(claims.load(project / f"metrics/{k}.claims.json").claims) for k in papers
    }
    run(["dvc", "repro", "--force", *papers], project)
    after = digest(project, DETERMINISTIC)
    changed = sorted(k for k in before if before[k] != after.get(k) and not k.endswith(".timing.json"))
    # Measured claims (peak memory) may differ slightly: the rest of their metrics file may not.
    measured = {
        f"metrics/{k}.json": claims.measured_keys(claims.load(project / f"metrics/{k}.claims.json").claims)
        for k in papers
    }
    changed = [
        k
        for k in changed
        if not measured.get(_metrics_file(k))
        or (
            k in before_json  # a claims file holding measured claims: its other claims are compared below
            and _without(before_json[k], measured[k]) != _without(json.loads((project / k).read_text()), measured[k])
        )
    ]
    assert not changed, changed
    assert {k: claims.deterministic(claims.load(project / f"metrics/{k}.claims.json").claims) for k in papers} == (
        deterministic_claims
    )
    rerun = run(["dvc", "repro"], project).stdout  # strip@schrodinger_pca may run: the test restored its notebook
    assert not [k for k in papers if f"Running stage '{k}'" in rerun], rerun


def _metrics_file(path: str) -> str:
    return path.replace(".claims.json", ".json")


def _without(metrics: dict, keys: set[str]) -> dict:
    return {k: v for k, v in metrics.items() if k not in keys}


@pytest.mark.exhaustive  # ~40 s: DVC's queue machinery, not ours; keeps make test under 15 minutes
def test_queued_experiment_runs_and_is_listed(tmp_path):
    project = tiny_copy(tmp_path / "p")
    run(["dvc", "commit", "-f", "-q", "data.dvc"], project)  # the queue's workspace checks data out of the cache
    run(["dvc", "exp", "run", "--queue", "-S", "schrodinger_pca.anchor_spacing=4", "schrodinger_pca"], project)
    run(["dvc", "queue", "start"], project)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], project).stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    assert "Success" in status, status + run(["dvc", "queue", "logs", "--help"], project, check=False).stdout
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    text = json.dumps(shown)
    assert '"anchor_spacing": 4' in text and "spca_min_overlap" in text


def test_failing_cell_fails_the_stage_and_leaves_no_stale_outs(tmp_path):
    project = copy_project(tmp_path / "p", with_data=True)
    nb_path = project / "notebooks/schrodinger_pca.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells.insert(4, nbformat.v4.new_code_cell('raise RuntimeError("deliberate failure for the test")'))
    nbformat.write(nb, nb_path)
    result = run(["dvc", "repro", "schrodinger_pca"], project, check=False)
    assert result.returncode != 0
    assert "deliberate failure for the test" in result.stderr
    stale = [
        "reports/schrodinger_pca.ipynb",
        "metrics/schrodinger_pca.json",
        "metrics/schrodinger_pca.claims.json",
        "reports/figures/schrodinger_pca",
        "metrics/plots/schrodinger_pca",
    ]
    for out in stale:
        assert not (project / out).exists(), out
    assert (project / "reports/schrodinger_pca.failed.ipynb").exists()
    assert not list((project / "reports").glob(".staging-*"))


def test_invalid_params_stop_the_stage_before_any_work(tmp_path):
    project = copy_project(tmp_path / "p", with_data=True)
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("anchor_spacing: 6", "anchor_spacng: 6"))
    result = run(["dvc", "repro", "schrodinger_pca"], project, check=False)
    assert result.returncode != 0
    assert "schrodinger_pca.anchor_spacng: unknown key" in result.stderr
    assert not (project / "reports/schrodinger_pca.failed.ipynb").exists()
