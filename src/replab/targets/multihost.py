"""The edge pipeline with one rank per target: rank r runs ``python -m replab.edge.pipeline`` on target r
(over SSH, or here for ``local``), with the gloo rendezvous on the first target's address.

The same rank program as the single-machine launcher (:func:`replab.edge.pipeline.launch`), so results are
comparable; each rank's result file comes back like any output of ``replab target run``. The first rank to
fail stops the others (its connection is dropped and the agent kills the rank there).
"""

from __future__ import annotations

import json
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path

from ..edge.pipeline import PipelineConfig
from . import check as checks
from .config import LocalTarget, SshTarget, TargetError
from .remote import Remote


def rendezvous_address(remote: Remote) -> str:
    t = remote.target
    if isinstance(t, SshTarget):
        return t.address or t.host
    return "127.0.0.1"


def launch(
    config: PipelineConfig, remotes: list[Remote], timeout: float | None = None, log_dir: str | Path | None = None
) -> dict:
    """Train ``config`` with rank r on ``remotes[r]``; returns what :func:`replab.edge.pipeline.launch` does.
    Every target is checked first (gloo, one torch major.minor). ``log_dir``: each rank's output and result."""
    world = len(config.starts)
    if len(remotes) != world:
        raise TargetError(f"{world} pipeline stages need {world} targets, got {len(remotes)}")
    kinds = {type(r.target) for r in remotes}
    if kinds not in ({SshTarget}, {LocalTarget}):
        # 127.0.0.1 would be each remote (or namespaced) rank's own loopback.
        raise TargetError(
            "a multi-host run takes ssh targets only (or only `local`): give this machine an ssh entry; emulated "
            "devices run the pipeline through the AccEPT notebook's emulated cluster"
        )
    checks.require([checks.check(r.name, r.target, pipeline=True) for r in remotes])
    port = int(remotes[0].call("freeport").decode().strip())
    master = rendezvous_address(remotes[0])
    timeout = 600 + 10 * config.steps if timeout is None else timeout
    results: list[dict | None] = [None] * world
    errors: list[BaseException | None] = [None] * world
    failed_order: list[int] = []  # ranks in the order they failed (the first is the cause; the others follow)
    if config.init:
        raise TargetError(
            f"a checkpoint folder ({config.init}) is not shipped to targets: start from the seed's initialisation, "
            "or run on emulated devices"
        )
    inputs: dict[str, Path] = {}
    sent = asdict(config)
    if config.tokens:  # a GPT-2 run's token stream travels with the config, into each run folder
        inputs["tokens.npy"] = Path(config.tokens)
        sent["tokens"] = "tokens.npy"
    with tempfile.TemporaryDirectory(prefix="replab-multihost-") as tmp:
        folder = Path(log_dir) if log_dir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        config_file = Path(tmp) / "config.json"
        config_file.write_text(json.dumps(sent, indent=1))
        inputs["config.json"] = config_file

        def rank_main(rank: int) -> None:
            remote = remotes[rank]
            shown = remote.on_line
            try:
                log = open(folder / f"rank{rank}.log", "w")  # noqa: SIM115 - closed below, written from callbacks
            except OSError as exc:
                errors[rank] = exc
                failed_order.append(rank)
                for other in remotes:
                    other.cancelled.set()
                return

            def on_line(line: str) -> None:
                log.write(line + "\n")
                log.flush()
                shown(line)

            remote.on_line = on_line
            env = {
                "RANK": str(rank),
                "WORLD_SIZE": str(world),
                "MASTER_ADDR": master,
                "MASTER_PORT": str(port),
                "OMP_NUM_THREADS": "1",
            }
            if isinstance(remote.target, SshTarget) and remote.target.gloo_ifname:
                env["GLOO_SOCKET_IFNAME"] = remote.target.gloo_ifname
            try:
                remote.run(
                    ["python", "-m", "replab.edge.pipeline", "config.json", "result.json"],
                    inputs=inputs,
                    outputs={"result.json": folder / f"rank{rank}.json"},
                    env=env,
                    timeout=timeout,
                )
                results[rank] = json.loads((folder / f"rank{rank}.json").read_text())
            except BaseException as exc:  # noqa: BLE001 - re-raised by the launching thread
                errors[rank] = exc
                failed_order.append(rank)  # list.append is atomic
                for other in remotes:
                    other.cancelled.set()
            finally:
                remote.on_line = shown
                log.close()

        threads = [threading.Thread(target=rank_main, args=(r,), name=f"rank{r}") for r in range(world)]
        started: list[threading.Thread] = []
        try:
            for t in threads:
                t.start()
                started.append(t)
            for t in started:
                t.join()
        except BaseException:  # Ctrl-C: stop every rank there before leaving
            for r in remotes:
                r.cancelled.set()
            for t in started:
                t.join()
            raise
        finally:
            for r in remotes:
                r.cancelled.clear()
    if failed_order:
        # The rank whose failure was seen first (ranks are polled every 50 ms): usually the cause, the others
        # failing because it went away.
        rank = failed_order[0]
        exc = errors[rank]
        raise TargetError(f"pipeline rank {rank} on {remotes[rank].name} failed first: {exc}") from exc
    return {
        "losses": results[-1]["losses"],
        "step_seconds": results[-1]["step_seconds"],
        "seconds": max(r["seconds"] for r in results),
        "ranks": results,
        "targets": [r.name for r in remotes],
    }
