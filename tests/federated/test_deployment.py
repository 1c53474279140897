"""The deployment engine: a real flower-superlink, two local flower-supernode processes and one SuperNode
started over SSH on a target (an sshd on loopback), `flwr run`; a local SuperNode is killed in the middle of
round 1."""

import json
import math
import os
import signal
import time
from pathlib import Path

from replab.federated.deploy import LoopbackFederation, write_app
from replab.targets.remote import Remote

from ..conftest import ROOT
from .conftest import tiny_spec


def group_members(pgid: int) -> list[int]:
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # after the ")" of the name: state, ppid, pgrp
            members.append(int(stat.parent.name))
    return members


def test_local_and_ssh_supernodes_survive_a_node_killed_mid_round_and_stop_cleanly(tmp_path, loopback_host):
    rounds = tmp_path / "rounds.json"
    # The data path is relative (the target gets the data in its run folder; the model is resolved there by
    # name). Two connected nodes are enough to start a round. The SuperLink marks the killed node offline at
    # most 60 s after its last heartbeat (two missed 30 s beats) and answers its message with an error, which
    # ends round 1; the timeout is longer than that, so round 2 always starts after the node is seen offline
    # (with a shorter one, whether round 2 sampled it depended on when its last heartbeat happened).
    spec = tiny_spec(n_clients=3, data_root="data")
    app = write_app(tmp_path / "app", spec, 2, rounds, min_clients=2, round_timeout=150)
    remote = Remote("device", loopback_host.target(tmp_path / "device"))
    with LoopbackFederation(tmp_path / "fed", n=2, remotes=[remote], cwd=ROOT) as fed:
        run = fed.submit(app)
        victim = fed.nodes[1]
        deadline = time.monotonic() + 120
        # Mid-round: the SuperNode has started a ClientApp process for its train message.
        while len(group_members(victim.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(group_members(victim.pid)) >= 2, "the SuperNode never started its ClientApp"
        os.killpg(victim.pid, signal.SIGKILL)
        killed = time.monotonic()
        stdout, stderr = run.communicate(timeout=400)
        # Offline detection (<= 60 s) plus round 2 ends well before round 1's timeout alone would (>= 130 s).
        assert time.monotonic() - killed < 120, "round 1 ended by its timeout, not by the node going offline"
        assert run.returncode == 0, stdout[-2000:] + stderr[-2000:]
        survivors = [fed.link, fed.nodes[0]]
        assert all(p.poll() is None for p in survivors) and fed.remote_threads[0].is_alive()
    assert all(p.poll() is not None for p in survivors)  # stopped on exit, here and on the target
    assert not fed.remote_threads[0].is_alive() and not fed.remote_errors
    rows = json.loads(rounds.read_text())
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert rows[1]["clients"] == 3 and rows[1]["replies"] == 2  # round 1 completed without the killed node
    # Round 2 samples only the nodes the SuperLink still sees: the SSH node and the surviving local one.
    assert rows[2]["clients"] == 2 and rows[2]["replies"] == 2
    assert rows[2]["train_loss"] < math.log(4)  # the survivors still learn
