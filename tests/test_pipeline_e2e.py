"""The whole pipeline on the tiny profile, in a fresh copy of the project."""

import json

import nbformat
import pytest

from .conftest import run

pytestmark = pytest.mark.slow

OUTS = [
    "reports/schrodinger_pca.ipynb", "reports/schrodinger_pca.html", "reports/index.html", "metrics/schrodinger_pca.json",
    "reports/pac.ipynb", "reports/pac.html", "metrics/pac.json", "models/pac/dpac_digits.safetensors",
]  # fmt: skip


def test_repro_then_noop_then_experiment(project):
    first = run(["dvc", "repro"], project)
    for out in OUTS:
        assert (project / out).exists(), out
    metrics = json.loads((project / "metrics/schrodinger_pca.json").read_text())
    assert metrics["scale"]["profile"] == "tiny"
    assert len(metrics["undersampling"]["spca_l2"]["overlap"]) == 10
    assert list((project / "reports/figures/schrodinger_pca").glob("*.png"))
    assert "Running stage 'schrodinger_pca'" in first.stdout

    second = run(["dvc", "repro"], project)
    assert "Running stage" not in second.stdout, second.stdout
    assert run(["dvc", "status"], project).stdout.strip().endswith("up to date.")

    # Saving the notebook with outputs must not make the paper stage stale (it depends on the stripped copy).
    nb_path = project / "notebooks/schrodinger_pca.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="hello")]
    nb.cells[1].execution_count = 1
    nbformat.write(nb, nb_path)
    third = run(["dvc", "repro"], project)
    assert "Running stage 'schrodinger_pca'" not in third.stdout
    run(["git", "checkout", "--", "notebooks/schrodinger_pca.ipynb"], project)
    run(["dvc", "repro"], project)

    exp = run(["dvc", "exp", "run", "-S", "schrodinger_pca.anchor_spacing=4"], project)
    assert "Running stage 'schrodinger_pca'" in exp.stdout
    metrics = json.loads((project / "metrics/schrodinger_pca.json").read_text())
    assert metrics["scale"]["anchor_spacing_px"] == 4
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    assert shown  # the experiment is recorded


def test_same_params_give_the_same_metrics(project):
    run(["dvc", "repro", "schrodinger_pca"], project)
    first = json.loads((project / "metrics/schrodinger_pca.json").read_text())
    run(["dvc", "repro", "--force", "schrodinger_pca"], project)
    second = json.loads((project / "metrics/schrodinger_pca.json").read_text())
    first.pop("timings"), second.pop("timings")
    assert first == second


def test_failing_cell_fails_the_stage_and_leaves_no_stale_outs(project):
    nb_path = project / "notebooks/schrodinger_pca.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells.insert(4, nbformat.v4.new_code_cell('raise RuntimeError("deliberate failure for the test")'))
    nbformat.write(nb, nb_path)
    result = run(["dvc", "repro", "schrodinger_pca"], project, check=False)
    assert result.returncode != 0
    assert "deliberate failure for the test" in result.stderr
    stale = ["reports/schrodinger_pca.ipynb", "metrics/schrodinger_pca.json", "reports/figures/schrodinger_pca"]
    for out in stale:
        assert not (project / out).exists(), out
    assert (project / "reports/schrodinger_pca.failed.ipynb").exists()
    assert not list((project / "reports").glob(".staging-*"))


def test_invalid_params_stop_the_stage_before_any_work(project):
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("anchor_spacing: 6", "anchor_spacng: 6"))
    result = run(["dvc", "repro", "schrodinger_pca"], project, check=False)
    assert result.returncode != 0
    assert "schrodinger_pca.anchor_spacng: unknown key" in result.stderr
    assert not (project / "reports/schrodinger_pca.failed.ipynb").exists()
