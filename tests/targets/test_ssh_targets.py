"""replab.targets against a real OpenSSH server on loopback (no mocks)."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from replab.targets import Remote, TargetError
from replab.targets.check import check

from ..conftest import ROOT, run
from .hosts import free_port, keygen

QUICK = 30  # seconds: every failure below must be reported within this (a few ssh connections on a loaded CI)


def tiny_pipeline(**kw):
    from replab.edge.pipeline import PipelineConfig

    model = dict(n_blocks=3, d_model=32, n_heads=2, vocab=32, seq_len=16)
    return PipelineConfig(**{"batch": 8, "n_microbatches": 2, "model": model, **kw})


def remote(host, tmp_path, **overrides) -> Remote:
    return Remote("loop", host.target(tmp_path / "remote-work", **overrides), on_line=lambda line: None)


def no_process_with(marker: str, besides: tuple[int, ...] = ()) -> bool:
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
    return not [p for p in out if int(p) not in (os.getpid(), *besides)]


def test_check_reports_python_torch_gloo_memory_and_disk(loopback_host, tmp_path):
    result = check("loop", loopback_host.target(tmp_path / "w"))
    assert result.ok, result.problems
    facts = result.facts
    assert facts["torch"].startswith("2.") and facts["gloo"] is True
    assert facts["memory_available_mb"] > 0 and facts["disk_free_mb"] > 0 and facts["cpu_count"] >= 1


def test_run_brings_outputs_back_and_resends_only_changed_files(loopback_host, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for name, text in [("a.txt", "alpha"), ("b.txt", "beta" * 1000), ("c.txt", "gamma")]:
        (inputs / name).write_text(text)
    files = {f"in/{p.name}": p for p in sorted(inputs.iterdir())}
    code = "import pathlib; t = ''.join(p.read_text() for p in sorted(pathlib.Path('in').iterdir())); "
    code += "pathlib.Path('out').mkdir(); pathlib.Path('out/joined.txt').write_text(t); print('done', len(t))"
    lines = []
    r = remote(loopback_host, tmp_path)
    r.on_line = lines.append
    dest = tmp_path / "local-out"
    first = r.run(["python", "-c", code], inputs=files, outputs={"out": dest})
    assert (dest / "joined.txt").read_text() == "alpha" + "beta" * 1000 + "gamma"
    assert lines == [f"done {5 + 4000 + 5}"]
    assert first.shipped.files_sent == first.shipped.files  # a fresh target holds nothing yet
    second = r.run(["python", "-c", code], inputs=files, outputs={"out": dest})
    assert second.shipped.files_sent == 0 and second.shipped.payload_bytes == 0
    (inputs / "b.txt").write_text("BETA" * 1000)
    third = r.run(["python", "-c", code], inputs=files, outputs={"out": dest})
    assert third.shipped.files_sent == 1 and third.shipped.payload_bytes == 4000
    # What crossed ssh: that file and the run's manifest (one tar) against the whole code base the first time.
    assert 0 < third.shipped.wire_bytes < first.shipped.wire_bytes / 4
    assert (dest / "joined.txt").read_text() == "alpha" + "BETA" * 1000 + "gamma"
    assert not list((tmp_path / "remote-work" / "runs").iterdir())  # fetched runs are removed there


def test_the_shipped_code_is_what_runs_there(loopback_host, tmp_path):
    r = remote(loopback_host, tmp_path)
    code = "import replab, pathlib; pathlib.Path('where').write_text(replab.__file__)"
    r.run(["python", "-c", code], outputs={"where": tmp_path / "where"})
    assert str(tmp_path / "remote-work" / "runs") in (tmp_path / "where").read_text()


def test_a_failing_command_leaves_no_partial_outputs(loopback_host, tmp_path):
    dest = tmp_path / "result.txt"
    code = "open('result.txt', 'w').write('half'); import sys; print('bad input', file=sys.stderr); sys.exit(3)"
    began = time.monotonic()
    with pytest.raises(TargetError, match=r"exit 3\):\nbad input"):
        remote(loopback_host, tmp_path).run(["python", "-c", code], outputs={"result.txt": dest})
    assert time.monotonic() - began < QUICK
    assert not dest.exists() and not list(tmp_path.glob(".result.txt*"))
    assert not list((tmp_path / "remote-work" / "runs").iterdir())


def test_a_missing_output_is_an_error_and_nothing_is_written(loopback_host, tmp_path):
    code = "open('one.txt', 'w').write('1')"
    outputs = {"one.txt": tmp_path / "one.txt", "two.txt": tmp_path / "two.txt"}
    with pytest.raises(TargetError, match="wrote no two.txt"):
        remote(loopback_host, tmp_path).run(["python", "-c", code], outputs=outputs)
    assert not (tmp_path / "one.txt").exists()


def sleeper(marker: str) -> str:
    """A command that starts a child which would outlive it, says so, then sleeps: the agent must kill the
    whole group."""
    return (
        f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', "
        f"'{marker}']); open('out.txt', 'w').write('x'); print('started', flush=True); time.sleep(60)"
    )


def assert_gone(marker: str, work: Path, dest: Path) -> None:
    deadline = time.monotonic() + 8
    while not no_process_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert no_process_with(marker), "a remote process outlived the run"
    assert not dest.exists()
    assert not list((work / "runs").iterdir())


@pytest.mark.parametrize("how", ["timeout", "cancel"])
def test_timeout_or_cancel_kills_the_remote_process_group(loopback_host, tmp_path, how):
    marker = f"replab-sleeper-{how}-{os.getpid()}"
    r = remote(loopback_host, tmp_path)
    started = threading.Event()
    # cancel: what a multi-host run does to the other ranks when one fails, here once the command runs
    r.on_line = lambda line: (started.set(), how == "cancel" and r.cancelled.set()) if line == "started" else None
    dest = tmp_path / "out.txt"
    began = time.monotonic()
    with pytest.raises(TargetError, match="timed out" if how == "timeout" else "cancelled"):
        r.run(
            ["python", "-c", sleeper(marker), marker], outputs={"out.txt": dest}, timeout=5 if how == "timeout" else 60
        )
    assert started.is_set(), "the command never started: nothing was tested"
    assert time.monotonic() - began < QUICK
    assert_gone(marker, tmp_path / "remote-work", dest)


@pytest.mark.parametrize("name", ["loop", "local"])
def test_ctrl_c_on_the_cli_stops_the_run_there(loopback_host, tmp_path, name):
    """SIGINT to `replab target run` (what Ctrl-C sends), over ssh and on this machine."""
    import signal

    targets = tmp_path / "targets.yaml"
    entry = loopback_host.target(tmp_path / "remote-work").model_dump(exclude={"kind"})
    targets.write_text(yaml.safe_dump({"targets": {"loop": {"kind": "ssh", **entry}}}))
    marker = f"replab-sleeper-ctrlc-{name}-{os.getpid()}"
    env = {**os.environ, "REPLAB_TARGETS": str(targets), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = ["replab", "target", "run", name, "--output", "out.txt", "--", "python", "-c", sleeper(marker), marker]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:  # wait until the command runs there
        seen.append(line)
        if "started" in line:
            break
    assert "started" in "".join(seen), "".join(seen)
    began = time.monotonic()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=QUICK) == 130
    assert time.monotonic() - began < QUICK
    work = tmp_path / "remote-work" if name == "loop" else tmp_path / "build" / "targets" / "local"
    assert_gone(marker, work, tmp_path / "out.txt")


def test_a_connection_that_goes_silent_ends_the_remote_command(loopback_host, tmp_path):
    """The client stops (SIGSTOP: no FIN, no heartbeat, as when a laptop sleeps or Wi-Fi drops): the agent
    kills the command after the heartbeat timeout instead of letting it run to the stage's timeout."""
    import signal

    marker = f"replab-sleeper-silent-{os.getpid()}"
    r = remote(loopback_host, tmp_path)
    r.heartbeat_timeout_s = 3
    started = threading.Event()
    r.on_line = lambda line: started.set() if line == "started" else None
    outcome = []

    def go():
        try:
            r.run(["python", "-c", sleeper(marker), marker])
        except TargetError as exc:
            outcome.append(exc)

    t = threading.Thread(target=go)
    t.start()
    assert started.wait(QUICK), "the command did not start"
    client = r.process
    assert client is not None and not no_process_with(marker, (client.pid,))
    os.kill(client.pid, signal.SIGSTOP)
    try:
        gone_by = time.monotonic() + 3 + 8
        # (the stopped ssh client's own command line holds the marker too)
        while not no_process_with(marker, (client.pid,)) and time.monotonic() < gone_by:
            time.sleep(0.2)
        assert no_process_with(marker, (client.pid,)), "the command outlived a silent connection"
    finally:
        os.kill(client.pid, signal.SIGCONT)
        t.join(timeout=30)
    assert outcome and "went silent" in str(outcome[0])


@pytest.mark.parametrize(
    "broken, message",
    [
        ({"port": "free"}, "connection refused"),
        ({"known_hosts": "wrong"}, "does not match known_hosts"),
        ({"identity_file": "stranger"}, "refused the key"),
        ({"python": "/nonexistent/python3"}, "no Python at"),
    ],
)
def test_a_broken_target_fails_a_run_quickly_and_writes_nothing(loopback_host, tmp_path, broken, message):
    overrides = dict(broken)
    if overrides.get("port") == "free":
        overrides["port"] = free_port()
    if overrides.get("known_hosts") == "wrong":
        pub = keygen(tmp_path / "other_host_key").with_suffix(".pub").read_text().split()
        (tmp_path / "kh").write_text(f"[127.0.0.1]:{loopback_host.port} {pub[0]} {pub[1]}\n")
        overrides["known_hosts"] = str(tmp_path / "kh")
    if overrides.get("identity_file") == "stranger":
        overrides["identity_file"] = str(keygen(tmp_path / "id_stranger"))
    dest = tmp_path / "out.txt"
    began = time.monotonic()
    with pytest.raises(TargetError, match=message):
        remote(loopback_host, tmp_path, **overrides).run(
            ["python", "-c", "open('out.txt', 'w').write('x')"], outputs={"out.txt": dest}
        )
    assert time.monotonic() - began < QUICK
    assert not dest.exists() and not list(tmp_path.glob(".out.txt*"))


def test_an_unknown_host_key_is_refused_with_the_keyscan_line(loopback_host, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(TargetError, match=rf"not in known_hosts.*ssh-keyscan -p {loopback_host.port} 127.0.0.1"):
        remote(loopback_host, tmp_path, known_hosts=str(empty)).probe()


def test_a_wrong_host_key_is_refused(loopback_host, tmp_path):
    other = keygen(tmp_path / "other_host_key")
    pub = other.with_suffix(".pub").read_text().split()
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"[127.0.0.1]:{loopback_host.port} {pub[0]} {pub[1]}\n")
    began = time.monotonic()
    with pytest.raises(TargetError, match="does not match known_hosts"):
        remote(loopback_host, tmp_path, known_hosts=str(wrong)).probe()
    assert time.monotonic() - began < QUICK


def test_a_refused_connection_says_so(loopback_host, tmp_path):
    began = time.monotonic()
    with pytest.raises(TargetError, match="connection refused.*is sshd running"):
        remote(loopback_host, tmp_path, port=free_port()).probe()
    assert time.monotonic() - began < QUICK


def test_a_key_the_host_does_not_accept_says_so(loopback_host, tmp_path):
    stranger = keygen(tmp_path / "id_stranger")
    with pytest.raises(TargetError, match="refused the key.*authorized_keys"):
        remote(loopback_host, tmp_path, identity_file=str(stranger)).probe()


def test_a_missing_remote_python_says_which_and_how_to_set_it(loopback_host, tmp_path):
    with pytest.raises(TargetError, match="no Python at '/nonexistent/python3'.*set `python:`"):
        remote(loopback_host, tmp_path, python="/nonexistent/python3").probe()


def test_cli_check_and_run_through_a_targets_file(loopback_host, tmp_path):
    targets = tmp_path / "targets.yaml"
    entry = loopback_host.target(tmp_path / "remote-work").model_dump(exclude={"kind"})
    targets.write_text(yaml.safe_dump({"targets": {"loop": {"kind": "ssh", **entry}}}))
    env = {"REPLAB_TARGETS": str(targets)}
    ok = run(["replab", "target", "check", "loop", "local"], tmp_path, env=env)
    assert "loop: ok" in ok.stdout and "gloo    available" in ok.stdout
    (tmp_path / "numbers.json").write_text(json.dumps([1, 2, 3]))
    code = "import json; json.dump(sum(json.load(open('numbers.json'))), open('sum.json', 'w'))"
    cmd = ["replab", "target", "run", "loop", "--input", "numbers.json", "--output", "sum.json", "--"]
    done = run([*cmd, "python", "-c", code], tmp_path, env=env)
    assert json.loads((tmp_path / "sum.json").read_text()) == 6
    assert "shipped" in done.stderr
    missing = run(["replab", "target", "check", "no-such"], tmp_path, env=env, check=False)
    assert missing.returncode != 0 and "known: local, loop" in missing.stdout


def test_dvc_ssh_remote_round_trips_push_and_pull(loopback_host, tmp_path):
    project, store, home = tmp_path / "project", tmp_path / "store", tmp_path / "home"
    project.mkdir()
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "known_hosts").write_text(loopback_host.known_hosts.read_text())
    env = {"HOME": str(home), "DVC_NO_ANALYTICS": "1"}
    run(["dvc", "init", "--no-scm", "-q"], project, env=env)
    run(["dvc", "remote", "add", "-d", "box", f"ssh://root@127.0.0.1:{loopback_host.port}{store}"], project, env=env)
    run(["dvc", "remote", "modify", "box", "keyfile", str(loopback_host.user_key)], project, env=env)
    (project / "weights.bin").write_bytes(os.urandom(50_000))
    original = (project / "weights.bin").read_bytes()
    run(["dvc", "add", "-q", "weights.bin"], project, env=env)
    run(["dvc", "push", "-q"], project, env=env)
    assert any(p.is_file() for p in store.rglob("*"))
    (project / "weights.bin").unlink()
    subprocess.run(["rm", "-rf", str(project / ".dvc" / "cache")], check=True)
    run(["dvc", "pull", "-q"], project, env=env)
    assert (project / "weights.bin").read_bytes() == original


def test_the_example_targets_file_is_valid():
    from replab.targets.config import load

    known = load(ROOT / "targets.example.yaml")
    assert {"local", "jetson", "phone"} <= set(known)
    assert known["phone"].port == 8022 and known["quarter"].caps(ROOT / "profiles")[0] == 0.25


def test_a_bad_targets_file_names_the_key(tmp_path):
    from replab.targets.config import load

    bad = tmp_path / "t.yaml"
    bad.write_text("targets:\n  jetson:\n    kind: ssh\n    prot: 22\n")
    with pytest.raises(TargetError, match=r"jetson.*host.*Field required|prot"):
        load(bad)


def test_ssh_gets_one_quoted_command_and_strict_host_keys():
    import shlex

    from replab.targets import SshTarget, ssh

    target = SshTarget(kind="ssh", host="jetson")
    argv = ssh.argv(target, ["python3", "-c", "print('a b'); import os", "x;rm -rf /"])
    assert "-p" not in argv  # the port of ~/.ssh/config (or 22) applies unless one is set
    assert "StrictHostKeyChecking=yes" in argv and "BatchMode=yes" in argv
    assert shlex.split(argv[-1]) == ["python3", "-c", "print('a b'); import os", "x;rm -rf /"]
    assert Path(argv[0]).name == "ssh"


def test_two_hosts_in_namespaces_train_the_pipeline_like_one_process(user_key, tmp_path):
    """Rank r runs over ssh on host r (its own network namespace, a 100 Mbit/s tbf-shaped link), gloo's
    rendezvous on the first host's address; fp32 boundaries, so the losses equal one process's."""
    from replab.edge.pipeline import single_process_losses
    from replab.targets.multihost import launch

    from .hosts import namespace_hosts, require_sshd

    require_sshd()
    cfg = tiny_pipeline(starts=[0, 3], steps=4)
    with namespace_hosts(tmp_path / "hosts", user_key, n=2, rate_mbit=100) as hosts:
        remotes = [
            Remote(f"h{i}", h.target(tmp_path / f"work{i}", gloo_ifname=h.gloo_ifname), on_line=lambda line: None)
            for i, h in enumerate(hosts)
        ]
        result = launch(cfg, remotes, timeout=240, log_dir=tmp_path / "logs")
    assert result["targets"] == ["h0", "h1"]
    assert result["losses"] == pytest.approx(single_process_losses(cfg), rel=1e-5)
    assert (tmp_path / "logs" / "rank1.log").read_text().count("loss") == 4


def test_a_gpt2_pipeline_ships_its_token_stream_to_each_target(loopback_host, tmp_path):
    """A GPT-2 config's token file travels to every target (the config there names the shipped copy); a
    checkpoint folder does not, and is refused before anything runs."""
    import dataclasses

    import numpy as np

    from replab.edge.pipeline import PipelineConfig, single_process_losses
    from replab.targets.multihost import launch

    tokens = tmp_path / "tokens.npy"
    np.save(tokens, (np.arange(5000) * 7 % 300).astype(np.int32))
    model = dict(n_blocks=2, d_model=32, n_heads=4, vocab=300, seq_len=16)
    cfg = PipelineConfig(
        starts=[0, 2], arch="gpt2", tokens=str(tokens), model=model, batch=4, n_microbatches=2, steps=2
    )
    remotes = [Remote(n, loopback_host.target(tmp_path / f"w{n}"), on_line=lambda line: None) for n in "ab"]
    result = launch(cfg, remotes, timeout=240)
    assert result["losses"] == pytest.approx(single_process_losses(cfg), rel=1e-5)
    with pytest.raises(TargetError, match="not shipped to targets"):
        launch(dataclasses.replace(cfg, init=str(tmp_path)), remotes)


def test_the_first_failing_rank_stops_the_others_and_is_named(loopback_host, tmp_path):
    """Rank 1 cannot open its gloo socket (no such interface): rank 0, waiting at the rendezvous, is stopped
    there and the error names rank 1."""
    from replab.targets.multihost import launch

    cfg = tiny_pipeline(starts=[0, 2], steps=2)
    good = Remote("a", loopback_host.target(tmp_path / "wa"), on_line=lambda line: None)
    bad = Remote("b", loopback_host.target(tmp_path / "wb", gloo_ifname="nosuchif0"), on_line=lambda line: None)
    began = time.monotonic()
    with pytest.raises(TargetError, match="pipeline rank 1 on b failed first"):
        launch(cfg, [good, bad], timeout=120)
    assert time.monotonic() - began < 90
    deadline = time.monotonic() + 10
    while not no_process_with("replab.edge.pipeline config.json") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert no_process_with("replab.edge.pipeline config.json")
    assert not list((tmp_path / "wa" / "runs").iterdir()) and not list((tmp_path / "wb" / "runs").iterdir())
