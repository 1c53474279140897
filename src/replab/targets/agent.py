"""The remote half of ``replab.targets``: run by the target's Python as ``python -c <this file> OP ARGS_JSON``.

Standard library only, Python >= 3.8 (JetPack 5 ships 3.8), so nothing has to be installed on a device
beyond Python itself (and torch for the stages). Nothing here parses a shell string: the command to run
arrives as a JSON argv list.

Operations (ARGS_JSON always carries ``workdir``; relative to the remote home unless absolute):

- ``missing``  stdin: object hashes, one per line; prints those not in ``workdir/objects``.
- ``receive``  stdin: a tar stream whose members are named by their sha256; each is checked and stored.
- ``run``      lays out ``runs/<run_id>`` from the objects (``manifest``: the hash of a JSON object
               ``{path: [sha256, mode]}``), runs ``argv`` there in its own process group with stdout and stderr
               merged into ours, under ``timeout``. The caller writes a heartbeat to our stdin: when it closes
               (the caller stopped, ssh ended), when it is silent for ``silence`` seconds (a connection dropped
               without a word) or on SIGINT/SIGTERM/SIGHUP, the whole group is killed. A failed run removes its
               folder; a successful one stays for ``fetch``.
- ``fetch``    writes a tar of ``outputs`` (paths inside the run folder) to stdout, then removes the folder.
- ``clean``    removes a run folder.
- ``probe``    prints the machine as JSON: Python, torch, gloo, memory, disk, CPU and GPU.
- ``freeport`` prints a free TCP port (the gloo rendezvous port of a multi-host run).
"""

import hashlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time

EXIT_TIMEOUT = 124  # what coreutils' timeout returns; the caller turns it into a timeout error
EXIT_VANISHED = 125  # the caller went away (stdin closed) before the command finished


def _workdir(args):
    path = os.path.expanduser(args["workdir"])
    if not os.path.isabs(path):
        path = os.path.join(os.path.expanduser("~"), path)
    for sub in ("objects", "runs", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    return path


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safe_rel(rel):
    parts = rel.replace("\\", "/").split("/")
    if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise SystemExit("agent: refusing path " + repr(rel))
    return os.path.join(*parts)


def op_missing(args):
    objects = os.path.join(_workdir(args), "objects")
    wanted = [line.strip() for line in sys.stdin if line.strip()]
    for h in wanted:
        if not os.path.exists(os.path.join(objects, h)):
            print(h)


def op_receive(args):
    root = _workdir(args)
    count = 0
    with tarfile.open(fileobj=sys.stdin.buffer, mode="r|") as tar:
        for member in tar:
            name = member.name
            if not member.isfile() or len(name) != 64 or any(c not in "0123456789abcdef" for c in name):
                raise SystemExit("agent: unexpected member " + repr(name))
            tmp = os.path.join(root, "tmp", f"{name}.{os.getpid()}")
            with tar.extractfile(member) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            if _sha256(tmp) != name:
                os.unlink(tmp)
                raise SystemExit("agent: object " + name + " arrived corrupted")
            os.replace(tmp, os.path.join(root, "objects", name))
            count += 1
    print(count)


def _layout(root, run_dir, manifest):
    for rel, entry in manifest.items():
        digest, mode = entry
        dest = os.path.join(run_dir, _safe_rel(rel))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        # A copy, not a hard link: a command that edits an input in place must not corrupt the store.
        shutil.copyfile(os.path.join(root, "objects", digest), dest)
        os.chmod(dest, mode)


def _kill_group(pgid, grace=3.0):
    """SIGTERM the whole group, then SIGKILL whatever is left of it (the leader exiting first does not
    save a child that ignores SIGTERM)."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _safe_id(value):
    if not value or len(value) > 64 or any(c not in "0123456789abcdef" for c in value):
        raise SystemExit("agent: bad id " + repr(value))
    return value


def _become_subreaper():
    """Orphans of the command (a daemonised grandchild that left its process group) become our children, so
    they can be found and killed too (Linux; elsewhere the process group has to do)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _kill_children():
    """SIGKILL every remaining child of ours (the command's orphans, reparented to us as subreaper)."""
    me = str(os.getpid())
    for _ in range(20):
        found = []
        for pid in os.listdir("/proc") if os.path.isdir("/proc") else []:
            if not pid.isdigit():
                continue
            try:
                with open("/proc/" + pid + "/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if stat.rsplit(")", 1)[-1].split()[1] == me:
                found.append(int(pid))
        if not found:
            return
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (OSError, ChildProcessError):
                pass


def op_run(args):
    # A signal only raises a flag; the loop below turns it into a kill of the whole group, which a second
    # signal can no longer interrupt.
    stop = []

    def on_signal(signum, frame):
        stop.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    _become_subreaper()
    root = _workdir(args)
    run_dir = os.path.join(root, "runs", _safe_id(args["run_id"]))
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    ok = False
    proc = None
    try:
        # The manifest travels as an object (one argument could not hold thousands of paths).
        with open(os.path.join(root, "objects", _safe_id(args["manifest"]))) as f:
            _layout(root, run_dir, json.load(f))
        env = dict(os.environ)
        env.update(args.get("env", {}))
        env.setdefault("PYTHONUNBUFFERED", "1")  # lines reach the caller as they are printed
        env["PYTHONPATH"] = os.pathsep.join(
            [os.path.join(run_dir, p) for p in args.get("pythonpath", [])] + [env.get("PYTHONPATH", "")]
        ).rstrip(os.pathsep)
        argv = [sys.executable if a == "{python}" else a for a in args["argv"]]
        last_heard = [time.monotonic()]
        gone = threading.Event()

        def watch_stdin():
            # The caller keeps our stdin open, writing a heartbeat, for as long as it wants the command to
            # live; EOF (it closed or its ssh ended) or silence (a connection dropped without a word) ends it.
            try:
                while sys.stdin.buffer.read1(4096):
                    last_heard[0] = time.monotonic()
            finally:
                gone.set()

        if stop:
            return 128 + stop[0]
        try:
            proc = subprocess.Popen(
                argv, cwd=run_dir, env=env, stdin=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
            )
        except OSError as exc:
            print(f"agent: cannot start {argv[0]}: {exc}", file=sys.stderr, flush=True)
            return 127
        threading.Thread(target=watch_stdin, daemon=True).start()
        deadline = time.monotonic() + float(args["timeout"])
        silence = float(args.get("silence", 30))
        while proc.poll() is None:
            if stop:
                print(f"agent: stopped by signal {stop[0]}; command killed", file=sys.stderr, flush=True)
                return 128 + stop[0]
            if gone.is_set() or time.monotonic() - last_heard[0] > silence:
                print("agent: caller gone; command killed", file=sys.stderr, flush=True)
                return EXIT_VANISHED
            if time.monotonic() > deadline:
                print(f"agent: timed out after {args['timeout']:.0f} s; command killed", file=sys.stderr, flush=True)
                return EXIT_TIMEOUT
            time.sleep(0.05)
        ok = proc.returncode == 0
        if not ok:
            print(f"agent: command exited with {proc.returncode}", file=sys.stderr, flush=True)
        return proc.returncode
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if proc is not None:
            _kill_group(proc.pid, grace=0.0 if proc.poll() is not None else 3.0)  # none of its group outlives it
        _kill_children()
        if not ok:
            shutil.rmtree(run_dir, ignore_errors=True)


def _regular_only(info):
    if not (info.isfile() or info.isdir()):
        raise SystemExit("agent: output " + repr(info.name) + " is not a regular file or folder")
    return info


def op_fetch(args):
    run_dir = os.path.join(_workdir(args), "runs", _safe_id(args["run_id"]))
    try:
        outputs = [_safe_rel(o) for o in args["outputs"]]
        missing = [o for o in outputs if not os.path.exists(os.path.join(run_dir, o))]
        if missing:
            print("agent: the command wrote no " + ", ".join(missing), file=sys.stderr)
            return 3
        with tarfile.open(fileobj=sys.stdout.buffer, mode="w|") as tar:
            for o in outputs:
                tar.add(os.path.join(run_dir, o), arcname=o, filter=_regular_only)
        return 0
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def op_clean(args):
    shutil.rmtree(os.path.join(_workdir(args), "runs", _safe_id(args["run_id"])), ignore_errors=True)


def _meminfo():
    out = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) / 1024  # MiB
    except OSError:
        pass
    return out


def _cpu_model():
    try:
        with open("/proc/device-tree/model") as f:  # Jetson boards and many phones name themselves here
            board = f.read().strip("\x00\n ")
    except OSError:
        board = ""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key = line.split(":", 1)[0].strip().lower()
                if key in ("model name", "hardware", "processor") and ":" in line:
                    value = line.split(":", 1)[1].strip()
                    if value and not value.isdigit():
                        model = value
                        break
    except OSError:
        pass
    return " / ".join(p for p in (board, model or platform.processor() or platform.machine()) if p)


def op_probe(args):
    root = _workdir(args)
    mem = _meminfo()
    report = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "machine": platform.machine(),
        "system": platform.system(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_total_mb": mem.get("MemTotal"),
        "memory_available_mb": mem.get("MemAvailable"),
        "disk_free_mb": shutil.disk_usage(root).free / 2**20,
        "workdir": root,
        "torch": None,
        "gloo": None,
        "gpu": None,
    }
    try:
        import torch
        import torch.distributed as dist

        report["torch"] = torch.__version__
        report["gloo"] = bool(dist.is_available() and dist.is_gloo_available())
        if torch.cuda.is_available():
            report["gpu"] = torch.cuda.get_device_name(0)
    except Exception as exc:  # noqa: BLE001 - any import failure is what the check reports
        report["torch_error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(report))


def op_freeport(args):
    with socket.socket() as s:
        s.bind(("", 0))
        print(s.getsockname()[1])


def main(argv):
    op, args = argv[0], json.loads(argv[1])
    result = globals()["op_" + op](args) or 0
    return result


def _main_exit(argv):
    try:
        code = main(argv)
    except SystemExit as exc:
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
        code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    except BaseException as exc:  # noqa: BLE001 - reported, then the same hard exit
        print(f"agent: {type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    # The stdin watcher of `run` blocks in read(): leave without waiting for it.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    code = 128 - code if code < 0 else code  # a command killed by signal N: 128 + N, as shells report it
    os._exit(min(code, 255))


if __name__ == "__main__":
    _main_exit(sys.argv[1:])
