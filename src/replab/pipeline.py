"""A notebook stage: validate params, execute the stripped notebook with papermill, and publish its
outputs only when every cell ran. A failure leaves the failed notebook for reading and no stale outs."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from . import config
from .papers import get as get_paper

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
    return {
        "notebook": REPORTS / f"{key}.ipynb",
        "figures": REPORTS / "figures" / key,
        "metrics": METRICS / f"{key}.json",
        "models": MODELS / key,
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


def run_stage(key: str, params_file: Path = config.PARAMS_FILE, progress: bool = True) -> dict[str, Path]:
    """Run ``notebooks/<key>.ipynb`` (its stripped copy where the strip stage made one)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    get_paper(key)
    params = config.load(params_file)  # stops here, before any work, on a bad params.yaml
    parameters = config.notebook_parameters(params, key)
    source = STRIPPED / f"{key}.ipynb"
    if not source.exists():
        source = NOTEBOOKS / f"{key}.ipynb"
    check_kernel()
    outs = outputs(key)
    for path in outs.values():
        _remove(path)

    # Staging inside the project at a fixed relative path: the executed notebook shows no machine paths,
    # and its injected parameters are the same on every run.
    staging = REPORTS / f".staging-{key}"
    _remove(staging)
    staging.mkdir(parents=True)
    try:
        parameters.update(
            metrics_path=str(staging / "metrics.json"), figures_dir=str(staging / "figures"),
            models_dir=str(staging / "models"), data_dir="data",
        )  # fmt: skip
        executed = staging / "executed.ipynb"
        try:
            papermill.execute_notebook(
                str(source), str(executed), parameters=parameters, kernel_name=KERNEL,
                progress_bar=progress, cwd=".", log_output=False,
            )  # fmt: skip
        except PapermillExecutionError as exc:
            if executed.exists():
                executed.replace(outs["failed"])
            raise StageError(
                f"notebook {source} failed in cell {exc.exec_count}: {exc.ename}: {exc.evalue}\n"
                f"the executed notebook with the traceback: {outs['failed']}"
            ) from None
        if not (staging / "metrics.json").exists():
            raise StageError(f"notebook {source} ran but wrote no metrics (expected at the metrics_path parameter)")
        outs["metrics"].parent.mkdir(exist_ok=True)
        outs["figures"].parent.mkdir(parents=True, exist_ok=True)
        if (staging / "figures").exists():
            (staging / "figures").replace(outs["figures"])
        else:
            outs["figures"].mkdir()
        if (staging / "models").exists():
            outs["models"].parent.mkdir(parents=True, exist_ok=True)
            (staging / "models").replace(outs["models"])
        (staging / "metrics.json").replace(outs["metrics"])
        executed.replace(outs["notebook"])
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return outs
