"""The registry, dvc.yaml, params.yaml and the notebooks agree; a new paper needs only the files the README lists."""

import json

import nbformat
import pytest
import yaml

from replab import config, dvcgen
from replab.papers import OUTSIDE_STAGES, PAPERS

from .conftest import ROOT, copy_project, run


def test_committed_dvc_yaml_is_the_generated_one():
    assert (ROOT / "dvc.yaml").read_text() == dvcgen.render(), "run `replab pipeline generate` and commit dvc.yaml"


def test_registry_params_notebooks_and_stages_agree():
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = config.validate(raw)
    assert set(raw) - {"profile", "seed", "targets"} == set(PAPERS)
    assert {p.stem for p in (ROOT / "notebooks").glob("*.ipynb")} == set(PAPERS)
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == {"strip", "profile", "report", *PAPERS}
    for key, paper in PAPERS.items():
        nb = nbformat.read(ROOT / paper.notebook, as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        names = {line.split("=")[0].strip() for line in cell.source.splitlines() if "=" in line and line[0].isalpha()}
        assert names == set(config.notebook_parameters(params, key)), key  # no path or stale parameter
        for dep in stages[key]["deps"]:
            assert (ROOT / dep).exists() or dep.startswith(("build/", "data/")), dep
        assert paper.key_figure, key


def test_every_library_module_of_a_paper_package_is_some_papers_dependency():
    """A module no stage lists would change results without making any stage stale."""
    covered = [c for p in PAPERS.values() for c in p.code] + list(OUTSIDE_STAGES)
    packages = {c.split("/")[0] for c in covered if c.split("/")[0] not in ("kernels",)}
    for package in packages:
        for module in (ROOT / "src/replab" / package).glob("*.py"):
            rel = module.relative_to(ROOT / "src/replab").as_posix()
            assert any(rel == c or rel.startswith(c + "/") or c == package for c in covered), rel


def test_readme_says_how_to_add_a_paper():
    text = (ROOT / "README.md").read_text()
    assert "## Adding a paper" in text
    section = text.split("## Adding a paper", 1)[1].split("\n## ", 1)[0]
    for must in ("src/replab/papers.py", "params.yaml", "notebooks/", "replab pipeline generate", "DATASETS"):
        assert must in section, must


TOY_PARAMS = '''
"""params.yaml section ``toy``."""

from pydantic import Field

from ..schema import Strict


class ToyParams(Strict):
    n: int = Field(ge=1)
'''
TOY_HEADLINE = '''
"""The toy paper's claims."""

from ..claims import PaperResults, PaperValue, claim


def headline(total: int, *, profile: str) -> PaperResults:
    return PaperResults(paper="toy", profile=profile, scale={"n": total}, claims=[
        claim("total", "sum of 1..n", total, scale="n numbers", method="paper", target=(">=", 10),
              paper=PaperValue(value=55, source="Table 1")),
    ])
'''
TOY_ENTRY = """        Paper(
            key="toy", title="A toy paper", citation="Nobody. Toys. 2026",
            params_model="replab.toy.params:ToyParams", code=("toy",),
            plots=(Plot("partial_sums", "i", ("sum",), "Partial sums"),), key_figure="sums",
        ),
    ]
}"""
TOY_CELLS = [
    ("n = 3", ["parameters"]),
    (
        "import matplotlib.pyplot as plt\nfrom replab.nbtools import stage_outputs\n"
        "from replab.toy.headline import headline\n"
        "out = stage_outputs('toy')\nfig, ax = plt.subplots(); ax.plot(range(n)); out.figure(fig, 'sums')\n"
        "out.curve('partial_sums', [{'i': i, 'sum': sum(range(i + 1))} for i in range(n)])\n"
        "out.save(headline(sum(range(1, n + 1)), profile=profile))",
        [],
    ),
]


@pytest.mark.slow
def test_a_new_paper_needs_only_the_listed_files(tmp_path):
    project = copy_project(tmp_path / "p", with_data=True)
    package = project / "src/replab/toy"
    package.mkdir()
    (package / "__init__.py").write_text('"""A toy paper."""\n')
    (package / "params.py").write_text(TOY_PARAMS)
    (package / "headline.py").write_text(TOY_HEADLINE)
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "replab", "display_name": "replab", "language": "python"}}
    )
    for source, tags in TOY_CELLS:
        nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": tags}))
    nb.cells[0].source = "profile = 'laptop'\nseed = 0\nn = 3"
    nbformat.write(nb, project / "notebooks/toy.ipynb")
    with (project / "params.yaml").open("a") as f:
        f.write("\ntoy:\n  n: 4\n")
    registry = project / "src/replab/papers.py"
    text = registry.read_text()
    registry.write_text(text.replace("    ]\n}", TOY_ENTRY, 1))
    env = {"PYTHONPATH": str(project / "src")}  # the copy's library, not the installed one
    run(["replab", "pipeline", "generate"], project, env=env)
    edited = run(["git", "status", "--porcelain", "--untracked-files=no"], project).stdout.split()
    assert set(edited) - {"M"} == {"params.yaml", "src/replab/papers.py", "dvc.yaml"}, edited
    run(["replab", "params", "check"], project, env=env)
    run(["dvc", "repro", "toy"], project, env=env)
    metrics = json.loads((project / "metrics/toy.json").read_text())
    assert metrics == {"total": 10, "targets_met": 1, "targets_missed": 0}
    assert (project / "metrics/plots/toy/partial_sums.csv").read_text().startswith("i,sum\n0,0\n")
    run(["replab", "report"], project, env=env)
    index = (project / "reports/index.html").read_text()
    assert "A toy paper" in index and "Table 1" in index and all(p.title in index for p in PAPERS.values())
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], project, env=env).stdout)
    assert shown[""]["data"]["metrics/toy.json"]["data"]["total"] == 10
