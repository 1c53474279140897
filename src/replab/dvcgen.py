"""``dvc.yaml``, generated from the paper registry (``replab pipeline generate``).

A ``foreach`` cannot list the report stage's per-paper deps, and hand-listed deps drift from the code, so the
whole file is written from :data:`replab.papers.PAPERS`; a test fails when the committed file differs.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml

from .claims import paths as claim_paths
from .data.build import module_file
from .papers import PAPERS, SHARED_CODE, Paper

DVC_YAML = Path("dvc.yaml")
HEADER = """\
# Generated from src/replab/papers.py by `replab pipeline generate`: do not edit by hand (a test compares).
# Each paper's notebook stage runs the output-stripped copy of notebooks/<paper>.ipynb, so saving a notebook
# with outputs in JupyterLab does not make its stage stale. The device profiles a stage reads are listed from
# params.yaml: after changing which profiles a paper uses there, run `replab pipeline generate` again.
"""


def _src(path: str) -> str:
    return f"src/replab/{path}"


def _uncached(path: str) -> dict:
    return {path: {"cache": False}}


def profile_stage() -> dict:
    """``profile@<target>`` for each target in params.yaml's ``targets.run_on`` (DVC reads the list)."""
    return {
        "foreach": "${targets.run_on}",
        "do": {
            "cmd": "replab target profile ${item} --out profiles/${item}.yaml",
            "deps": [_src("targets"), _src("edge/layer_timing.py"), _src("edge/profiles.py"), _src("edge/models.py")],
            "params": ["profile", "targets.scale"],
            "outs": ["profiles/${item}.yaml"],
        },
    }


def _param_deps(paper: Paper, params) -> list[str]:
    if not paper.param_deps:
        return []
    return list(getattr(getattr(params, paper.key), paper.param_deps)())


def paper_stage(paper: Paper, params=None) -> dict:
    files = claim_paths(Path("metrics"), paper.key)
    code = [_src(c) for c in paper.code]
    code += [module_file(d) for d in paper.data if module_file(d) not in code]
    outs: list = [f"reports/{paper.key}.ipynb", f"reports/figures/{paper.key}"]
    if paper.checkpoints:
        outs.append(f"models/{paper.key}")
    if paper.logs:
        outs.append(f"metrics/logs/{paper.key}")
    outs += [
        _uncached(files["claims"].as_posix()),
        _uncached(files["timing_claims"].as_posix()),
        _uncached(f"metrics/plots/{paper.key}"),
    ]
    return {
        "cmd": f"replab stage {paper.key}",
        "deps": [
            f"build/notebooks/{paper.key}.ipynb",
            *(f"data/{d}" for d in paper.data),
            *paper.deps,
            *(_param_deps(paper, params) if params is not None else []),
            *code,
            *(_src(s) for s in SHARED_CODE),
        ],
        "params": ["profile", "seed", paper.key],
        "outs": outs,
        "metrics": [_uncached(files["metrics"].as_posix()), _uncached(files["timing"].as_posix())],
    }


def report_stage() -> dict:
    deps = []
    for key in PAPERS:
        files = claim_paths(Path("metrics"), key)
        deps += [f"reports/{key}.ipynb", files["claims"].as_posix(), files["timing_claims"].as_posix()]
        deps.append(f"reports/figures/{key}")
    deps += [_src(f) for f in ("report.py", "claims.py", "measure.py", "papers.py", "assets.py", "templates")]
    outs = [f"reports/{key}.html" for key in PAPERS] + ["reports/index.html"]
    return {"cmd": "replab report", "deps": deps, "outs": outs}


def plots() -> list:
    out = []
    for paper in PAPERS.values():
        for plot in paper.plots:
            out.append(
                {
                    f"{paper.key}/{plot.name}": {
                        "template": plot.template,
                        "title": plot.title,
                        "x": plot.x,
                        "y": {f"metrics/plots/{paper.key}/{plot.name}.csv": list(plot.y)},
                    }
                }
            )
    return out


def document(params_file: Path = Path("params.yaml")) -> dict:
    from .config import load

    params = load(params_file)
    stages: dict = {
        "strip": {
            "foreach": list(PAPERS),
            "do": {
                "cmd": "replab notebook strip notebooks/${item}.ipynb --output build/notebooks/${item}.ipynb",
                "deps": ["notebooks/${item}.ipynb", _src("notebooks.py")],
                "outs": [_uncached("build/notebooks/${item}.ipynb")],
            },
        }
    }
    stages["profile"] = profile_stage()
    stages.update({key: paper_stage(paper, params) for key, paper in PAPERS.items()})
    stages["report"] = report_stage()
    return {"stages": stages, "plots": plots()}


def render(params_file: Path = Path("params.yaml")) -> str:
    body = yaml.safe_dump(
        document(params_file), sort_keys=False, default_flow_style=False, allow_unicode=True, width=120
    )
    return HEADER + body


def diff(path: Path = DVC_YAML) -> str:
    """Unified diff from the file on disk to the generated one ('' when they agree)."""
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = difflib.unified_diff(
        current.splitlines(keepends=True),
        render(path.with_name("params.yaml")).splitlines(keepends=True),
        str(path),
        "generated",
    )
    return "".join(lines)


def write(path: Path = DVC_YAML) -> bool:
    """Write the generated file; returns whether it changed."""
    text = render(path.with_name("params.yaml"))
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.write_text(text, encoding="utf-8")
    return True
