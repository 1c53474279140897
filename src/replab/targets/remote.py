"""Run a command on a target: ship what it needs, run it under a timeout, bring its outputs back atomically.

Shipping is content-addressed: the target keeps every file it was sent under its sha256 (``workdir/objects``)
and is asked which of a run's files it lacks, so an unchanged file is never sent twice. Each run is laid out
in a fresh folder from those objects; the code is ``src/replab`` of this checkout (on ``PYTHONPATH`` there), so
the target runs exactly the code of the stage. Outputs come back as one tar, are unpacked beside their
destinations and renamed into place only when all arrived: a failed, timed-out or interrupted run leaves no
partial outputs, and the agent kills the remote process group when the connection goes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import config, ssh
from .config import EmulatedTarget, SshTarget, TargetError

AGENT_SOURCE = (Path(__file__).parent / "agent.py").read_text(encoding="utf-8")
PACKAGE = Path(__file__).resolve().parents[1]  # src/replab of this checkout
CODE_SKIP_SUFFIXES = (".pyc", ".so")  # the C codec is built per machine; without it the torch path runs
AGENT_EXIT_TIMEOUT, AGENT_EXIT_VANISHED = 124, 125


@dataclass
class ShipReport:
    files: int  # files the run needs
    files_sent: int  # of those, the ones the target did not hold yet
    payload_bytes: int  # their bytes
    wire_bytes: int  # what went into ssh's stdin (tar headers included)


@dataclass
class RunResult:
    seconds: float
    shipped: ShipReport
    outputs: dict[str, Path]
    output_tail: str


def code_files() -> dict[str, Path]:
    """``src/replab/...`` -> file, for every file of the package (no caches, no compiled codec)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith(CODE_SKIP_SUFFIXES):
            out[f"src/replab/{path.relative_to(PACKAGE).as_posix()}"] = path
    return out


def expand_inputs(paths: list[str | Path], root: Path = Path(".")) -> dict[str, Path]:
    """Repository-relative inputs (files or folders) -> ``{relative path: file}``."""
    out = {}
    for p in paths:
        full = root / p
        if full.is_dir():
            for f in sorted(full.rglob("*")):
                if f.is_file():
                    out[f.relative_to(root).as_posix()] = f
        elif full.is_file():
            out[Path(p).as_posix()] = full
        else:
            raise TargetError(f"input {p}: not found")
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tail(lines: deque) -> str:
    return "\n".join(lines).strip()


class Remote:
    """One target, by name (from the targets file) or given directly."""

    def __init__(self, name: str, target=None, on_line: Callable[[str], None] | None = None):
        self.name = name
        self.target = target if target is not None else config.get(name)
        self.on_line = on_line or (lambda line: print(f"[{name}] {line}", file=sys.stderr, flush=True))
        self.cancelled = threading.Event()  # set from another thread to stop a run (multi-host failures)
        self.heartbeat_timeout_s = 30.0  # the agent kills the command after this long without hearing from us
        self.process: subprocess.Popen | None = None  # the running agent call (ssh, or the local agent)

    # -- talking to the agent ------------------------------------------------------------------------------
    @property
    def is_ssh(self) -> bool:
        return isinstance(self.target, SshTarget)

    def _workdir(self) -> str:
        wd = self.target.workdir
        return wd if self.is_ssh else str(Path(wd).resolve())

    def agent_argv(self, op: str, args: dict, prefix: list[str] | None = None) -> list[str]:
        body = [op, json.dumps({"workdir": self._workdir(), **args})]
        if self.is_ssh:
            return ssh.argv(self.target, [self.target.python, "-c", AGENT_SOURCE, *body])
        return [*(prefix or []), sys.executable, "-c", AGENT_SOURCE, *body]

    def failure(self, returncode: int, stderr: str, what: str) -> TargetError:
        """The error for a failed agent call: ssh's own failures, a missing Python, or the command's exit."""
        if self.is_ssh and returncode == ssh.SSH_FAILED:
            return TargetError(ssh.explain(self.name, self.target, stderr))
        if returncode == 127 and what != "the command":
            python = self.target.python if self.is_ssh else sys.executable
            return TargetError(
                f"target {self.name}: no Python at {python!r} there ({stderr.strip().splitlines()[-1:] or ''}); "
                f"set `python:` for it in {config.targets_file()} (Termux: `python`, after `pkg install python`)"
            )
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        return TargetError(f"target {self.name}: {what} failed (exit {returncode})" + (f":\n{tail}" if tail else ""))

    def call(
        self,
        op: str,
        args: dict | None = None,
        stdin: bytes | Path | None = None,
        timeout: float = 120,
        stdout: Path | None = None,
    ) -> bytes:
        """One agent operation; returns its stdout (bytes), or writes it to ``stdout`` (a file) instead."""
        argv = self.agent_argv(op, args or {})
        limit = timeout + (self.target.connect_timeout_s if self.is_ssh else 0)
        with contextlib.ExitStack() as files:
            source = files.enter_context(open(stdin, "rb")) if isinstance(stdin, Path) else subprocess.PIPE
            sink = files.enter_context(open(stdout, "wb")) if stdout is not None else subprocess.PIPE
            try:
                proc = subprocess.run(
                    argv,
                    input=None if isinstance(stdin, Path) else (stdin or b""),
                    stdin=source if isinstance(stdin, Path) else None,
                    stdout=sink,
                    stderr=subprocess.PIPE,
                    timeout=limit,
                )
            except subprocess.TimeoutExpired:
                raise TargetError(f"target {self.name}: `{op}` got no answer within {limit:.0f} s") from None
        if proc.returncode != 0:
            raise self.failure(proc.returncode, proc.stderr.decode(errors="replace"), f"`{op}`")
        return proc.stdout or b""

    # -- what the CLI offers -------------------------------------------------------------------------------
    def probe(self, timeout: float = 60) -> dict:
        """The target's Python, torch, gloo, memory, disk, CPU and GPU (``replab target check``)."""
        return json.loads(self.call("probe", timeout=timeout))

    def ship(self, files: dict[str, Path]) -> tuple[str, ShipReport]:
        """Make the target hold every file of ``files`` and the run's manifest; returns the manifest's hash
        and what was sent."""
        manifest = {rel: [_sha256(p), 0o755 if os.access(p, os.X_OK) else 0o644] for rel, p in files.items()}
        by_hash = {digest: files[rel] for rel, (digest, _) in manifest.items()}
        with tempfile.TemporaryDirectory(prefix="replab-ship-") as tmp:
            manifest_file = Path(tmp) / "manifest.json"
            manifest_file.write_text(json.dumps(manifest, sort_keys=True))
            manifest_hash = _sha256(manifest_file)
            wanted = "".join(f"{h}\n" for h in sorted({*by_hash, manifest_hash})).encode()
            # Only hashes we asked about (a chatty login script could add lines to the reply).
            missing = sorted(set(self.call("missing", stdin=wanted).decode().split()) & {*by_hash, manifest_hash})
            sent = [h for h in missing if h != manifest_hash]
            payload = sum(by_hash[h].stat().st_size for h in sent)
            wire = 0
            if missing:
                bundle = Path(tmp) / "objects.tar"
                # dereference: a symlinked input (DVC's symlink cache) is sent as the file it points to
                with tarfile.open(bundle, "w", dereference=True) as tar:
                    for h in missing:
                        tar.add(by_hash.get(h, manifest_file), arcname=h, recursive=False)
                wire = bundle.stat().st_size
                self.call("receive", stdin=bundle, timeout=max(120.0, wire / 1e5))  # >= 100 kB/s
        return manifest_hash, ShipReport(len(manifest), len(sent), payload, wire)

    def run(
        self,
        argv: list[str],
        inputs: dict[str, Path] | None = None,
        outputs: dict[str, Path] | None = None,
        env: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> RunResult:
        """Run ``argv`` (a list; ``"python"`` first means the target's Python) in a fresh folder on the target
        holding this checkout's ``src/replab`` and ``inputs`` (relative path -> local file), and bring
        ``outputs`` (relative path there -> local destination) back. Raises :class:`TargetError` on any
        failure, having left no output in place."""
        if not argv or not all(isinstance(a, str) for a in argv):
            raise TargetError("the command must be a non-empty list of strings")
        for rel in [*(inputs or {}), *(outputs or {})]:
            parts = Path(rel).parts
            if not parts or Path(rel).is_absolute() or ".." in parts:
                raise TargetError(f"{rel}: inputs and outputs are relative paths inside the run folder")
        timeout = float(timeout or self.target.run_timeout_s)
        began = time.perf_counter()
        manifest, shipped = self.ship({**code_files(), **(inputs or {})})
        run_id = uuid.uuid4().hex
        args = {
            "run_id": run_id,
            "manifest": manifest,
            "argv": ["{python}" if i == 0 and a == "python" else a for i, a in enumerate(argv)],
            "env": dict(env or {}),
            "pythonpath": ["src"],
            "timeout": timeout,
            "silence": self.heartbeat_timeout_s,
        }
        with self._device() as prefix:
            tail = self._stream(self.agent_argv("run", args, prefix), timeout, run_id)
        if outputs:
            try:
                fetched = self._fetch(run_id, outputs)
            except BaseException:
                self._clean_quietly(run_id)  # interrupted before the fetch removed the run there
                raise
        else:
            fetched = {}
            self._clean_quietly(run_id)
        return RunResult(time.perf_counter() - began, shipped, fetched, tail)

    # -- internals -----------------------------------------------------------------------------------------
    def _device(self):
        """For an emulated target, the cgroup/namespace prefix the run executes under."""
        if not isinstance(self.target, EmulatedTarget):
            return contextlib.nullcontext([])
        from ..edge.emulate import EmulatedCluster, EmulatedDevice

        cores, memory_mb, mbit = self.target.caps()
        cluster = EmulatedCluster([EmulatedDevice(self.name, cores, memory_mb, mbit)])

        @contextlib.contextmanager
        def entered():
            with cluster:
                if not cluster.emulated:
                    raise TargetError(f"target {self.name}: emulation is not available here ({cluster.reason})")
                yield cluster.command(0)

        return entered()

    def _stream(self, argv: list[str], timeout: float, run_id: str) -> str:
        """Run the agent's ``run``, show its output as it comes, and raise on any failure. The agent's stdin
        stays open for as long as the command may live: closing it (or losing ssh) kills the remote group."""
        out_tail: deque = deque(maxlen=40)
        err: list[bytes] = []
        # A session of its own: Ctrl-C reaches us, not the agent; we stop it in order (see below).
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
        )
        self.process = proc
        done = threading.Event()

        def pump_out():
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                out_tail.append(line)
                self.on_line(line)

        def pump_err():
            err.append(proc.stderr.read())

        def heartbeat():
            while not done.wait(min(5.0, self.heartbeat_timeout_s / 3)):
                try:
                    proc.stdin.write(b".")
                    proc.stdin.flush()
                except (BrokenPipeError, ValueError, OSError):
                    return

        readers = [threading.Thread(target=f, daemon=True) for f in (pump_out, pump_err, heartbeat)]
        for r in readers:
            r.start()
        # The agent enforces the timeout itself; ours adds the connection setup and a margin for its kill.
        deadline = time.monotonic() + timeout + (self.target.connect_timeout_s if self.is_ssh else 0) + 10
        reason = None
        try:
            while proc.poll() is None:
                if self.cancelled.is_set():
                    reason = "cancelled"
                elif time.monotonic() > deadline:
                    reason = f"timed out after {timeout:.0f} s"
                if reason:
                    break
                time.sleep(0.05)
        finally:
            done.set()
            if proc.poll() is None:  # interrupted, cancelled or timed out here: drop the connection
                with contextlib.suppress(OSError):
                    proc.stdin.close()
                # The agent needs its grace period (3 s) to stop the command's group; only then force it.
                for stop in (None, proc.terminate, proc.kill):
                    if stop is not None:
                        stop()
                    try:
                        proc.wait(timeout=10 if stop is None else 5)
                        break
                    except subprocess.TimeoutExpired:
                        continue
                if reason is None:  # an exception (Ctrl-C) is on its way up; make sure nothing stays there
                    self._clean_quietly(run_id)
            for r in readers:
                r.join(timeout=5)
            self.process = None
        stderr = b"".join(err).decode(errors="replace")
        code = proc.returncode
        if reason is not None:
            self._clean_quietly(run_id)
            raise TargetError(f"target {self.name}: {reason}; the remote command was stopped")
        # The agent's own lines on stderr say what happened; an exit code alone could be the command's.
        if "agent: timed out" in stderr:
            raise TargetError(f"target {self.name}: timed out after {timeout:.0f} s; the remote command was killed")
        if "agent: caller gone" in stderr:
            raise TargetError(
                f"target {self.name}: the connection went silent for {self.heartbeat_timeout_s:.0f} s; "
                "the remote command was killed"
            )
        if "agent: command exited with" in stderr:
            message = "\n".join(line for line in stderr.splitlines() if not line.startswith("agent: command exited"))
            tail = "\n".join((message.strip() or _tail(out_tail)).splitlines()[-15:])
            raise TargetError(f"target {self.name}: the command failed (exit {code})" + (f":\n{tail}" if tail else ""))
        if code != 0:
            message = stderr if stderr.strip() else _tail(out_tail)
            raise self.failure(code, message, "the command")
        return _tail(out_tail)

    def _clean_quietly(self, run_id: str) -> None:
        try:
            self.call("clean", {"run_id": run_id}, timeout=20)
        except TargetError:
            pass

    def _fetch(self, run_id: str, outputs: dict[str, Path]) -> dict[str, Path]:
        """Bring the outputs back: unpack beside each destination, then rename all into place."""
        staged: list[tuple[Path, Path]] = []
        try:
            with tempfile.TemporaryDirectory(prefix="replab-fetch-") as tmp:
                bundle = Path(tmp) / "outputs.tar"
                self.call("fetch", {"run_id": run_id, "outputs": list(outputs)}, timeout=600, stdout=bundle)
                unpacked = Path(tmp) / "out"
                with tarfile.open(bundle) as tar:
                    tar.extractall(unpacked, filter="data")
                for rel, dest in outputs.items():
                    dest = Path(dest)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    stage = dest.parent / f".{dest.name}.replab-{run_id[:8]}"
                    staged.append((stage, dest))  # before the move, so a half-made copy is removed too
                    shutil.move(str(unpacked / rel), stage)  # same file system as dest from here on
        except BaseException:
            for stage, _ in staged:
                if stage.is_dir() and not stage.is_symlink():
                    shutil.rmtree(stage, ignore_errors=True)
                else:
                    stage.unlink(missing_ok=True)
            raise
        # Everything arrived: only renames from here.
        for stage, dest in staged:
            if dest.is_dir() and not dest.is_symlink():
                old = dest.parent / f".{dest.name}.replab-old-{run_id[:8]}"
                dest.rename(old)
                stage.rename(dest)
                shutil.rmtree(old)
            else:
                os.replace(stage, dest)
        return {rel: Path(dest) for rel, dest in outputs.items()}
