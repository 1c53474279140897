"""Deployment: one ``flower-superlink`` and N ``flower-supernode`` processes (on loopback here; on Jetsons in
the field), running the same ClientApp as the simulation and a ServerApp that reads the run from Flower's run
config. :class:`LoopbackFederation` starts and stops them; ``flwr run`` submits the app.

The app folder holds only a ``pyproject.toml`` naming the components; the code is the installed ``replab``
(SuperLink runs with ``--disable-runtime-dependency-installation``: nothing is downloaded).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .flower import Spec, serve


def _server_app():
    from flwr.app import Context
    from flwr.serverapp import Grid, ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        config = context.run_config
        spec = Spec.from_json(str(config["spec"]))
        log_file = Path(str(config["log-file"]))
        rows: list[dict] = []

        def on_row(row: dict) -> None:  # rewritten every round: a killed run still leaves its rounds
            rows.append(row)
            tmp = log_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(rows, indent=1))
            tmp.replace(log_file)

        min_clients = int(config["min-clients"]) or None
        serve(grid, spec, int(config["num-rounds"]), on_row, min_clients, float(config["round-timeout"]))

    return app


server_app = _server_app()

PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "replab-federa"
version = "1.0.0"
dependencies = []

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "replab"

[tool.flwr.app.components]
serverapp = "replab.federated.deploy:server_app"
clientapp = "replab.federated.flower:client_app"

[tool.flwr.app.config]
spec = {spec}
num-rounds = {num_rounds}
log-file = {log_file}
min-clients = {min_clients}
round-timeout = {round_timeout}
"""


def write_app(folder: Path, spec: Spec, num_rounds: int, log_file: Path, min_clients: int = 0, round_timeout=600):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(
        PYPROJECT.format(
            spec=json.dumps(spec.to_json()),
            num_rounds=num_rounds,
            log_file=json.dumps(str(log_file)),
            min_clients=min_clients,
            round_timeout=float(round_timeout),
        )
    )
    return folder


def _free_port() -> int:
    from ..edge.pipeline import free_port

    return free_port()


class LoopbackFederation:
    """A SuperLink and ``n`` SuperNodes (node i gets ``partition-id=i``) as real processes on 127.0.0.1,
    each logging to ``folder``; stopped (SIGTERM, then SIGKILL) on exit, also after a failure."""

    def __init__(self, folder: Path, n: int):
        self.folder, self.n = Path(folder), n
        self.port = _free_port()  # SuperLink serves its Fleet, Control and Runtime APIs over HTTP on one port
        self.link: subprocess.Popen | None = None
        self.nodes: list[subprocess.Popen] = []
        self.home = self.folder / "flwr-home"
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**os.environ, "FLWR_HOME": str(self.home), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")  # noqa: SIM115 - the process's life
        return subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def __enter__(self) -> LoopbackFederation:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "config.toml").write_text(
            f'[superlink]\ndefault = "local"\n\n[superlink.local]\naddress = "127.0.0.1:{self.port}"\ninsecure = true\n'
        )
        try:
            self.link = self._start(
                "superlink",
                [
                    "flower-superlink",
                    "--insecure",
                    "--disable-runtime-dependency-installation",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--database",
                    str(self.folder / "state.db"),
                ],
            )
            self._wait_for("Uvicorn running", 1, "the SuperLink did not start")
            for i in range(self.n):
                self.nodes.append(self.start_node(i))
            self._wait_for("Activated node_id", self.n, "the SuperNodes did not all connect")
        except BaseException:
            self.close()
            raise
        return self

    def _wait_for(self, text: str, count: int, what: str, timeout: float = 60) -> None:
        log = self.folder / "superlink.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if log.exists() and log.read_text(errors="replace").count(text) >= count:
                return
            if self.link is not None and self.link.poll() is not None:
                break
            time.sleep(0.2)
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"{what} within {timeout:.0f} s:\n{tail}")

    def start_node(self, i: int) -> subprocess.Popen:
        return self._start(
            f"supernode{i}",
            [
                "flower-supernode",
                "--insecure",
                "--superlink",
                f"127.0.0.1:{self.port}",
                "--port",
                str(_free_port()),
                "--node-config",
                f"partition-id={i} num-partitions={self.n}",
            ],
        )

    def run(self, app: Path, timeout: float = 600) -> subprocess.CompletedProcess:
        """``flwr run APP local --stream``: returns when the run ends."""
        return subprocess.run(
            ["flwr", "run", str(app), "local", "--stream"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def close(self) -> None:
        procs = [*self.nodes, *([self.link] if self.link else [])]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in procs:
                if p.poll() is None:
                    try:
                        os.killpg(p.pid, sig)
                    except ProcessLookupError:
                        pass
            deadline = time.monotonic() + 8
            while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
                time.sleep(0.1)

    def __exit__(self, *exc) -> None:
        self.close()
