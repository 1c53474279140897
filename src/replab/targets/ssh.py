"""The OpenSSH client's argv for a target, and what its failures mean.

OpenSSH (not a Python SSH library) because it is what researchers already configured: their keys, agents,
``~/.ssh/config`` host aliases and known_hosts all apply. Host-key checking stays strict: an unknown host is
refused with the ``ssh-keyscan`` line to run, never accepted silently.
"""

from __future__ import annotations

import math
import shlex
import shutil
from pathlib import Path

from .config import SshTarget, TargetError

SSH_FAILED = 255  # OpenSSH's exit code for its own failures (remote exit codes pass through otherwise)


def ssh_binary() -> str:
    found = shutil.which("ssh")
    if found is None:
        raise TargetError("no `ssh` client on PATH: install OpenSSH (Debian: apt-get install openssh-client)")
    return found


def argv(target: SshTarget, remote_argv: list[str]) -> list[str]:
    """``ssh ... destination 'quoted remote argv'``: ssh joins its arguments with spaces for the remote shell,
    so the remote argv is quoted here, once, and never assembled from strings."""
    options = {
        "BatchMode": "yes",  # never prompt (no terminal in a DVC stage)
        "StrictHostKeyChecking": "yes",
        "ConnectTimeout": str(math.ceil(target.connect_timeout_s)),
        "ServerAliveInterval": "5",  # a vanished device ends the run within ~15 s, not at TCP's timeout
        "ServerAliveCountMax": "3",
    }
    if target.known_hosts:
        options["UserKnownHostsFile"] = str(Path(target.known_hosts).expanduser())
    if target.identity_file:
        options["IdentitiesOnly"] = "yes"
    out = [ssh_binary(), "-T", *(["-p", str(target.port)] if target.port else [])]
    for key, value in options.items():
        out += ["-o", f"{key}={value}"]
    if target.identity_file:
        out += ["-i", str(Path(target.identity_file).expanduser())]
    return [*out, "--", target.destination, shlex.join(remote_argv)]


def keyscan_line(target: SshTarget) -> str:
    known = target.known_hosts or "~/.ssh/known_hosts"
    port = f"-p {target.port} " if target.port and target.port != 22 else ""
    return f"ssh-keyscan {port}{target.host} >> {known}"


def explain(name: str, target: SshTarget, stderr: str) -> str:
    """One message for an ssh-level failure (exit 255): what happened and what to do."""
    where = f"{target.destination}:{target.port or 22}"
    text = stderr.strip()
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text or "Host key for" in text and "has changed" in text:
        return (
            f"target {name}: the host key of {where} does not match known_hosts (a reinstalled device, or someone "
            f"in between). If the device was reinstalled, remove the old key (ssh-keygen -R) and add the new one "
            f"after checking its fingerprint: {keyscan_line(target)}"
        )
    if "Host key verification failed" in text or "No host key is known" in text:
        return (
            f"target {name}: {where} is not in known_hosts; check its fingerprint, then add it: {keyscan_line(target)}"
        )
    if "Connection refused" in text:
        return f"target {name}: connection refused by {where}: is sshd running there (Termux: run `sshd`, port 8022)?"
    if "Permission denied" in text or "Too many authentication failures" in text:
        key = f" with {target.identity_file}" if target.identity_file else ""
        return (
            f"target {name}: {where} refused the key{key}: add its public key to the target's "
            f"~/.ssh/authorized_keys (ssh-copy-id), or set identity_file"
        )
    if any(s in text for s in ("timed out", "No route to host", "Network is unreachable", "Could not resolve")):
        return f"target {name}: {where} is unreachable ({text.splitlines()[-1]}): is it on and on this network?"
    last = text.splitlines()[-1] if text else "no message"
    return f"target {name}: ssh to {where} failed: {last}"
