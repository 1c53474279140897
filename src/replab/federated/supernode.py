"""``python -m replab.federated.supernode ARGS``: ``flower-supernode ARGS`` with this Python's scripts first on
PATH, so a SuperNode started over SSH finds ``flwr-clientapp`` (which it spawns per message) in the target's
environment without an activated virtualenv."""

from __future__ import annotations

import os
import shutil
import sys


def main(argv: list[str] | None = None) -> None:
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    exe = shutil.which("flower-supernode")
    if exe is None:
        sys.exit(f"flower-supernode is not installed for {sys.executable}: pip install flwr (see requirements)")
    args = sys.argv[1:] if argv is None else argv
    os.execv(exe, [exe, *args])  # the same process: stopping the run there stops the SuperNode


if __name__ == "__main__":
    main()
