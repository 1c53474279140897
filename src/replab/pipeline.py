"""A notebook stage: validate params, execute the stripped notebook with papermill, and publish its
outputs only when every cell ran and its claims are valid. A failure leaves the failed notebook for reading
and no stale outs."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from . import claims, config
from .nbtools import OUTPUT_ENV
from .papers import get as get_paper
from .progress import STAGE_ENV

log = logging.getLogger(__name__)

KERNEL = "replab"
NOTEBOOKS = Path("notebooks")
STRIPPED = Path("build/notebooks")  # written by the strip stages of dvc.yaml
REPORTS = Path("reports")
METRICS = Path("metrics")
MODELS = Path("models")  # checkpoints: DVC outs, pushed to the remote


class StageError(RuntimeError):
    pass


def outputs(key: str) -> dict[str, Path]:
    files = claims.paths(METRICS, key)
    return {
        "notebook": REPORTS / f"{key}.ipynb",
        "figures": REPORTS / "figures" / key,
        "metrics": files["metrics"],
        "timing": files["timing"],
        "claims": files["claims"],
        "timing_claims": files["timing_claims"],
        "plots": METRICS / "plots" / key,
        "models": MODELS / key,
        "logs": METRICS / "logs" / key,
        "failed": REPORTS / f"{key}.failed.ipynb",
    }


def check_kernel(name: str = KERNEL) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        raise StageError(
            f"Jupyter kernel {name!r} is not registered for this environment: run `make setup`, or "
            f"`python -m ipykernel install --sys-prefix --name {name}` inside the venv"
        ) from None


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


@contextmanager
def _environment(**values: str):
    """Environment variables the notebook's kernel inherits, restored afterwards."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{seconds:.1f}s"


def _drop_stderr(executed: Path, dest: Path) -> None:
    """Publish the executed notebook without stderr: the kernel captures what was written to the terminal
    (progress bars, rank lines), which belongs to the run's log, not to the notebook. A failed notebook keeps it."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    nbformat.write(nb, dest)
    executed.unlink()


def run_stage(key: str, params_file: Path = config.PARAMS_FILE, progress: bool = True) -> dict[str, Path]:
    """Run ``notebooks/<key>.ipynb`` (its stripped copy where the strip stage made one)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    paper = get_paper(key)
    params = config.load(params_file)  # stops here, before any work, on a bad params.yaml
    config.check_files(params, Path("."), str(params_file), papers=[key])
    parameters = config.notebook_parameters(params, key)
    source = STRIPPED / f"{key}.ipynb"
    if not source.exists():
        source = paper.notebook
    if not source.exists():
        raise StageError(f"{source}: not found (every registered paper needs notebooks/{key}.ipynb)")
    check_kernel()
    outs = outputs(key)
    for path in outs.values():
        _remove(path)

    # Staging inside the project at a fixed relative path; the notebook learns it from the environment, so
    # its parameters are exactly params.yaml's and the report shows no internal paths.
    staging = REPORTS / f".staging-{key}"
    _remove(staging)
    staging.mkdir(parents=True)
    started = time.perf_counter()
    _say(f"{key}: running {source} (profile {params.profile}); progress below, the report gets none of it")
    try:
        executed = staging / "executed.ipynb"
        try:
            with _environment(**{OUTPUT_ENV: str(staging), STAGE_ENV: key}):
                papermill.execute_notebook(
                    str(source),
                    str(executed),
                    parameters=parameters,
                    kernel_name=KERNEL,
                    progress_bar=progress,
                    cwd=".",
                    log_output=False,
                )
        except PapermillExecutionError as exc:
            if executed.exists():
                executed.replace(outs["failed"])
            raise StageError(
                f"notebook {source} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue} "
                f"(the executed notebook with the traceback: {outs['failed']})"
            ) from None
        written = claims.paths(staging / "metrics", key)
        if not written["claims"].exists():
            raise StageError(f"notebook {source} ran but saved no results (it must call `out.save(results)`)")
        results = claims.load(written["claims"])  # the schema, checked before anything is published
        # What the run used (for the reports) and how long the whole stage took (README's run times).
        timings = {**results.timings, "stage": time.perf_counter() - started}
        results = results.model_copy(update={"params": parameters, "timings": timings})
        claims.save(results, staging / "metrics")
        for name in ("metrics", "timing", "claims", "timing_claims"):
            outs[name].parent.mkdir(parents=True, exist_ok=True)
            written[name].replace(outs[name])
        optional = {"models": paper.checkpoints, "logs": paper.logs}
        for name in ("figures", "plots", "models", "logs"):
            if (staging / name).exists():
                outs[name].parent.mkdir(parents=True, exist_ok=True)
                (staging / name).replace(outs[name])
            elif optional.get(name, True):
                outs[name].mkdir(parents=True)
        _drop_stderr(executed, outs["notebook"])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    counts = results.counts()
    _say(
        f"{key}: done in {_duration(time.perf_counter() - started)} — targets {counts['met']} met, "
        f"{counts['missed']} missed, {counts['n/a']} n/a ({outs['claims']})"
    )
    return outs
