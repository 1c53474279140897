"""Device targets: this machine, attached devices over SSH (a Jetson, a phone under Termux) and emulated
devices, and running device stages on them (``replab target``)."""

from .config import EmulatedTarget, LocalTarget, SshTarget, TargetError, get, load
from .remote import Remote, RunResult, ShipReport

__all__ = [
    "EmulatedTarget",
    "LocalTarget",
    "Remote",
    "RunResult",
    "ShipReport",
    "SshTarget",
    "TargetError",
    "get",
    "load",
]
