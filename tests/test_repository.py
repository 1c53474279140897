"""The repository's own consistency: environment files, stripped notebooks."""

import re

import nbformat
import yaml

from replab.notebooks import is_stripped, strip, strip_file

from .conftest import ROOT


def requirement_names(text):
    names = set()
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(re.split(r"[\[=<>~! ]", line)[0].lower().replace("_", "-"))
    return names


def test_requirements_are_pinned_and_torch_is_the_cpu_pin():
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    lines = [line for line in lines if line]
    assert all("==" in line for line in lines), [line for line in lines if "==" not in line]
    assert "torch==2.13.0" in lines


def test_environment_yml_delegates_to_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert pip == ["-r requirements.txt", "-e ."]
    # No conda package shadows a pinned pip one with another version.
    conda_names = {re.split(r"[=<> ]", d)[0] for d in deps if isinstance(d, str)} - {"python", "pip"}
    assert not conda_names & requirement_names((ROOT / "requirements.txt").read_text())


def test_pyproject_dependencies_are_in_requirements():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pinned = requirement_names((ROOT / "requirements.txt").read_text())
    assert requirement_names("\n".join(project["dependencies"])) <= pinned
    assert project["scripts"]["replab"] == "replab.cli:main"


def test_committed_notebooks_are_stripped_and_parameterised():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        assert is_stripped(nb), f"{path.name} has outputs: run `replab notebook strip {path}`"
        first_code = next(c for c in nb.cells if c.cell_type == "code")
        assert "parameters" in first_code.metadata.get("tags", []), path.name
        assert nb.metadata.kernelspec.name == "replab"


def test_strip_removes_outputs_and_keeps_ids(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1"), nbformat.v4.new_markdown_cell("x")])
    nb.cells[0].outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=3)]
    nb.cells[0].execution_count = 3
    nb.cells[0].metadata["execution"] = {"iopub.execute_input": "2026-01-01"}
    nb.metadata["papermill"] = {"duration": 1.0}
    ids = [c.id for c in nb.cells]
    path = tmp_path / "a.ipynb"
    nbformat.write(nb, path)
    strip_file(path, tmp_path / "b.ipynb")
    out = nbformat.read(tmp_path / "b.ipynb", as_version=4)
    assert is_stripped(out) and [c.id for c in out.cells] == ids
    assert "execution" not in out.cells[0].metadata and "papermill" not in out.metadata
    # Stripping is idempotent byte for byte, so the strip stage's output hash is stable.
    before = (tmp_path / "b.ipynb").read_bytes()
    strip_file(tmp_path / "b.ipynb")
    assert (tmp_path / "b.ipynb").read_bytes() == before
    assert is_stripped(strip(nb))
