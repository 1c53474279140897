"""Target definitions in params.yaml and dvc.yaml: the profile@<target> stages and the profiles a paper reads."""

import pytest
import yaml

from replab import config, dvcgen
from replab.edge.profiles import DeviceProfile
from replab.targets.check import CheckResult, compatible
from replab.targets.config import TargetError

from ..conftest import ROOT, copy_project, run
from .hosts import free_port


def params_raw():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_run_on_names_are_validated():
    raw = params_raw()
    raw["targets"]["run_on"] = ["local", "Bad Name"]
    with pytest.raises(config.ParamsError, match="targets.*run_on"):
        config.validate(raw)


def test_a_device_measured_on_a_target_needs_that_targets_stage():
    raw = params_raw()
    raw["accept"]["devices"][0]["target"] = "jetson"
    with pytest.raises(config.ParamsError, match=r"accept.devices.0.target: 'jetson' is not in targets.run_on"):
        config.validate(raw)
    raw["targets"]["run_on"] = ["local", "jetson"]
    assert config.validate(raw).accept.devices[0].target == "jetson"


def test_the_paper_stage_depends_on_the_profiles_params_choose(tmp_path):
    stages = dvcgen.document(ROOT / "params.yaml")["stages"]
    assert stages["profile"]["foreach"] == "${targets.run_on}"
    assert stages["profile"]["do"]["outs"] == ["profiles/${item}.yaml"]
    accept = [d for d in stages["accept"]["deps"] if d.startswith("profiles")]
    assert accept == ["profiles/dev-cpu100.yaml", "profiles/dev-cpu25.yaml", "profiles/dev-cpu50.yaml"]
    raw = params_raw()
    raw["targets"]["run_on"] = ["local", "jetson"]
    raw["accept"]["devices"][2]["target"] = "jetson"
    changed = tmp_path / "params.yaml"
    changed.write_text(yaml.safe_dump(raw))
    deps = dvcgen.document(changed)["stages"]["accept"]["deps"]
    assert "profiles/jetson.yaml" in deps


def test_targets_with_different_torch_releases_are_refused_together():
    a = CheckResult("jetson", {"torch": "2.5.0a0+nv24.08"})
    b = CheckResult("phone", {"torch": "2.13.0"})
    c = CheckResult("local", {"torch": "2.13.1+cpu"})
    assert compatible([b, c]) == []
    (problem,) = compatible([a, b, c])
    assert "jetson: torch 2.5.0a0+nv24.08" in problem and "phone: torch 2.13.0" in problem


def test_a_target_may_not_overwrite_a_shipped_profile(tmp_path):
    from replab.targets.profiling import profile_target

    with pytest.raises(TargetError, match="shipped profile"):
        profile_target("dev-cpu100", ROOT / "profiles" / "dev-cpu100.yaml", grid="tiny")


def test_the_foreach_stage_profiles_the_loopback_target(loopback_host, tmp_path):
    """`dvc repro profile@loop` on a copy of the project: the profile is measured over ssh and lands in
    profiles/loop.yaml, labelled with the target."""
    project = copy_project(tmp_path / "project", with_data=False)
    text = (project / "params.yaml").read_text()
    text = text.replace("profile: laptop", "profile: tiny", 1)
    (project / "params.yaml").write_text(text.replace("run_on: [local]", "run_on: [local, loop, dead]"))
    entry = loopback_host.target(tmp_path / "remote-work").model_dump(exclude={"kind"})
    dead = {**entry, "port": free_port()}  # configured, but nothing listens there
    targets = {"loop": {"kind": "ssh", **entry}, "dead": {"kind": "ssh", **dead}}
    (project / "targets.local.yaml").write_text(yaml.safe_dump({"targets": targets}))
    done = run(["dvc", "repro", "--keep-going", "profile@dead", "profile@loop"], project, check=False)
    assert done.returncode != 0  # the unreachable target fails its own stage, and only that one
    assert "target dead: connection refused" in done.stdout + done.stderr
    assert "Running stage 'profile@loop'" in done.stdout
    profile = DeviceProfile.load(project / "profiles" / "loop.yaml")
    assert profile.kind == "measured" and profile.target == "loop" and "over ssh" in profile.source
    assert len(profile.layers) == 6 and all(r.forward_ms > 0 and r.backward_ms > 0 for r in profile.layers)
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    assert lock["profile@loop"]["outs"][0]["path"] == "profiles/loop.yaml" and "profile@dead" not in lock


def test_check_of_an_unknown_target_lists_the_known_ones(tmp_path):
    done = run(["replab", "target", "check", "no-such"], tmp_path, check=False, env={"REPLAB_TARGETS": "absent.yaml"})
    assert done.returncode == 1
    assert "no target 'no-such'; known: local (absent.yaml does not exist" in done.stdout


def test_a_command_runs_on_an_emulated_target_inside_its_cgroup(tmp_path):
    import os

    from replab.targets import EmulatedTarget, Remote

    if os.geteuid() != 0:
        pytest.skip("emulated targets need root (cgroups)")
    target = EmulatedTarget(kind="emulated", profile="dev-cpu50", workdir=str(tmp_path / "w"))
    assert target.caps(ROOT / "profiles")[0] == 0.5
    lines = []
    Remote("half", target, on_line=lines.append).run(["python", "-c", "print(open('/proc/self/cgroup').read())"])
    assert any(f"/rl{os.getpid()}-d0" in line for line in lines), lines  # this run's emulated device
