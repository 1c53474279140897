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
import threading
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


# What a SuperNode on a target needs besides the shipped code: the gloss data (run folder: data/...).
TARGET_DATA = "data/wordnet/noun_glosses.tsv"


class LoopbackFederation:
    """A SuperLink, ``n`` local SuperNodes and one SuperNode on each of ``remotes`` (``replab.targets.Remote``:
    SSH targets, started through the target agent), as real processes; node i gets ``partition-id=i`` (local
    ones first). Each logs to ``folder``; all are stopped on exit (SIGTERM, then SIGKILL; a target's agent stops
    its SuperNode's process group), also after a failure.

    The SuperLink listens on ``host`` (127.0.0.1 unless targets must reach it: then e.g. 0.0.0.0) and targets
    dial ``advertise`` (this machine's address as they see it). Runs read the gloss data relative to ``cwd``
    (the project root): a spec's ``data_root`` should be relative (``data``) when targets take part, since each
    target gets the data file in its run folder."""

    def __init__(
        self,
        folder: Path,
        n: int,
        remotes=(),
        host: str = "127.0.0.1",
        advertise: str = "127.0.0.1",
        cwd: Path | None = None,
    ):
        self.folder, self.n, self.remotes = Path(folder), n, list(remotes)
        self.host, self.advertise = host, advertise
        self.cwd = Path(cwd) if cwd is not None else Path.cwd()
        self.port = _free_port()  # SuperLink serves its Fleet, Control and Runtime APIs over HTTP on one port
        self.link: subprocess.Popen | None = None
        self.nodes: list[subprocess.Popen] = []
        self.remote_threads: list[threading.Thread] = []
        self.remote_errors: dict[str, BaseException] = {}
        self.home = self.folder / "flwr-home"
        bin_dir = str(Path(sys.executable).parent)
        self.env = {**os.environ, "FLWR_HOME": str(self.home), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}

    @property
    def size(self) -> int:
        return self.n + len(self.remotes)

    def _start(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")  # noqa: SIM115 - the process's life
        return subprocess.Popen(
            argv, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

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
                    self.host,
                    "--port",
                    str(self.port),
                    "--database",
                    str(self.folder / "state.db"),
                ],
            )
            self._wait_for("Uvicorn running", 1, "the SuperLink did not start")
            for i in range(self.n):
                self.nodes.append(self.start_node(i))
            for k, remote in enumerate(self.remotes):
                self.start_remote_node(self.n + k, remote)
            self._wait_for("Activated node_id", self.size, "the SuperNodes did not all connect", timeout=120)
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
            if self.remote_errors:
                break
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        remote = "".join(f"\n{name}: {error}" for name, error in self.remote_errors.items())
        raise RuntimeError(f"{what} within {timeout:.0f} s:{remote}\n{tail}")

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
                f"partition-id={i} num-partitions={self.size}",
            ],
        )

    def start_remote_node(self, i: int, remote) -> None:
        """A SuperNode on an SSH target, in a thread: the target agent runs it in a fresh folder holding the
        shipped ``replab`` and the gloss data, and stops it when this side cancels or goes away."""
        root = self.cwd
        port = int(remote.call("freeport").decode().strip())
        log = open(self.folder / f"supernode{i}-{remote.name}.log", "w")  # noqa: SIM115 - the thread's life

        def on_line(line: str) -> None:
            log.write(line + "\n")
            log.flush()

        remote.on_line = on_line
        argv = [
            "python", "-m", "replab.federated.supernode", "--insecure", "--superlink", f"{self.advertise}:{self.port}",
            "--port", str(port), "--node-config", f"partition-id={i} num-partitions={self.size}",
        ]  # fmt: skip

        def main() -> None:
            try:
                remote.run(argv, inputs={TARGET_DATA: root / TARGET_DATA})
            except BaseException as error:  # noqa: BLE001 - reported by _wait_for / close
                if not remote.cancelled.is_set():
                    self.remote_errors[remote.name] = error
            finally:
                log.close()

        thread = threading.Thread(target=main, name=f"supernode-{remote.name}", daemon=True)
        thread.start()
        self.remote_threads.append(thread)

    def submit(self, app: Path) -> subprocess.Popen:
        """``flwr run APP local --stream`` in the background (it exits when the run ends)."""
        return subprocess.Popen(
            ["flwr", "run", str(app), "local", "--stream"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, app: Path, timeout: float = 600) -> subprocess.CompletedProcess:
        """``flwr run APP local --stream``: returns when the run ends."""
        process = self.submit(app)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)

    def close(self) -> None:
        for remote in self.remotes:
            remote.cancelled.set()  # its agent stops the SuperNode's process group there
        for thread in self.remote_threads:
            thread.join(timeout=30)
        for remote in self.remotes:
            remote.cancelled.clear()
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
