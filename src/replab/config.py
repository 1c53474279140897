"""params.yaml: shared keys plus one section per registered paper, validated before any work starts.

An unknown key, a typo, a wrong type or an out-of-range value raises :class:`ParamsError` naming the key (as a
dotted path) and what is allowed. Each section's model lives in its paper's package; :func:`params_model`
combines them from the registry (``replab.papers``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model

from .schema import PROFILES, Profile, Strict

__all__ = ["PARAMS_FILE", "PROFILES", "ParamsError", "check_files", "load", "notebook_parameters", "validate"]

PARAMS_FILE = Path("params.yaml")


@cache
def params_model() -> type[BaseModel]:
    """The whole file's model: ``profile``, ``seed`` and one field per registered paper."""
    from .papers import params_models
    from .targets.params import TargetsParams

    sections = {key: (model, ...) for key, model in params_models().items()}
    return create_model(
        "Params",
        __base__=Strict,
        profile=(Profile, Field(description="tiny (tests, CI) | laptop (2-core CPU) | paper (GPU)")),
        seed=(int, Field(ge=0, le=2**32 - 1)),
        targets=(TargetsParams, Field(description="where the device stages run (profile@<target>)")),
        **sections,
    )


class ParamsError(ValueError):
    """params.yaml does not match the schema; the message lists every offending key."""


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in error["loc"]) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key (typo?)"
    if kind == "missing":
        return f"{key}: required key is missing"
    got = error.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{key}: {error['msg']}{got_text}"


def validate(raw: Any, source: str = "params") -> BaseModel:
    """Validate a parsed params mapping."""
    if not isinstance(raw, dict):
        raise ParamsError(f"{source}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        params = params_model().model_validate(raw)
    except ValidationError as exc:
        problems = [_describe(e) for e in exc.errors()]
        raise ParamsError(_message(source, problems)) from None
    # Across sections: a paper's device measured on a target needs that target's profile stage.
    problems = []
    for key in raw:
        check = getattr(getattr(params, key, None), "check_targets", None)
        if check is not None:
            problems.extend(check(params.targets.run_on))
    if problems:
        raise ParamsError(_message(source, problems))
    return params


def _message(source: str, problems: list[str]) -> str:
    if len(problems) == 1:
        return f"{source}: {problems[0]}"
    return f"{source} is invalid ({len(problems)} problems):\n" + "\n".join(f"  - {p}" for p in problems)


def load(path: str | Path = PARAMS_FILE) -> BaseModel:
    """Read and validate params.yaml."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: not found (run from the repository root, or name the file)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ParamsError(f"{path}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return validate(raw, str(path))


def check_files(
    params: BaseModel, root: Path = Path("."), source: str = "params.yaml", papers: list[str] | None = None
) -> None:
    """Cross-checks that need the project's files: each paper's data folders, and what its model checks
    itself (``check_files(root)``, e.g. device profiles that must exist). ``papers``: only these (a stage
    checks its own paper, so a missing data set of another paper does not stop it)."""
    from .papers import PAPERS

    problems = []
    for key, paper in PAPERS.items():
        if papers is not None and key not in papers:
            continue
        for name in paper.data:
            if not (root / "data" / name).is_dir():
                problems.append(f"{key}: data/{name} is missing (run `make data` or `replab data build`)")
        check = getattr(getattr(params, key), "check_files", None)
        if check is not None:
            problems.extend(check(root))
    if problems:
        raise ParamsError(_message(source, problems))


def notebook_parameters(params: BaseModel, section: str) -> dict[str, Any]:
    """Flat papermill parameters for one paper: shared keys, the section's keys, and the scale for the
    active profile (its keys merged in)."""
    body = getattr(params, section).model_dump(mode="json")
    scale = body.pop("scale", None)
    out: dict[str, Any] = {"profile": params.profile, "seed": params.seed, **body}
    if scale is not None:
        out.update(scale[params.profile])
    return out
