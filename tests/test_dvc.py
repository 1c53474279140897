import hashlib

from .conftest import copy_project, run


def tree_digest(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_default_remote_is_a_local_directory(tmp_path):
    project = copy_project(tmp_path / "p", with_data=False)
    remotes = run(["dvc", "remote", "list"], project).stdout.split()
    assert remotes[0] == "local" and "replab" in remotes[1] and "://" not in remotes[1]
    assert run(["dvc", "config", "core.analytics"], project).stdout.strip() == "false"


def test_push_to_a_remote_then_pull_into_a_fresh_clone(tmp_path):
    project = copy_project(tmp_path / "origin", with_data=True)
    remote = tmp_path / "remote"
    run(["dvc", "remote", "modify", "local", "url", str(remote)], project)
    run(["dvc", "commit", "-f", "data.dvc"], project)  # put the hard-linked data/ into this copy's cache
    run(["dvc", "push", "data.dvc"], project)
    run(["git", "commit", "-qam", "remote"], project)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / "data").exists()
    run(["dvc", "pull", "data.dvc"], clone)
    assert tree_digest(clone / "data") == tree_digest(project / "data")
    assert run(["dvc", "status", "data.dvc"], clone).stdout.strip().endswith("up to date.")


def test_a_fresh_clone_is_up_to_date(tmp_path):
    """The committed dvc.lock matches the tree: no stage has a modified dep, changed params or command
    (outs and stripped notebooks absent from a clone are fine)."""
    import json

    from replab import dvcgen

    # Deps that are another stage's outs (stripped notebooks, executed notebooks, figures) are absent from a clone.
    outs = set()
    for stage in dvcgen.document()["stages"].values():
        for out in stage.get("outs", stage.get("do", {}).get("outs", [])):
            outs.add(next(iter(out)) if isinstance(out, dict) else out)
    outs = {o.replace("${item}", key) for o in outs for key in dvcgen.PAPERS}
    project = copy_project(tmp_path / "clone", with_data=True)
    status = json.loads(run(["dvc", "status", "--json"], project).stdout)
    problems = {}
    for stage, entries in status.items():
        for entry in entries:
            if entry == "changed command" or (isinstance(entry, dict) and "changed params" in entry):
                problems.setdefault(stage, []).append(entry)
            elif isinstance(entry, dict) and "changed deps" in entry:
                bad = {p: s for p, s in entry["changed deps"].items() if s != "deleted" or p not in outs}
                if bad:
                    problems.setdefault(stage, []).append(bad)
    assert not problems, f"commit dvc.lock after `make repro` from a clean tree: {problems}"


def test_committed_results_are_from_the_committed_profile():
    """The metrics in git come from `make repro` at params.yaml's profile, not from a tiny test run."""
    import yaml

    from replab import claims
    from replab.papers import PAPERS

    from .conftest import ROOT

    profile = yaml.safe_load((ROOT / "params.yaml").read_text())["profile"]
    for key in PAPERS:
        assert claims.load(ROOT / f"metrics/{key}.claims.json").profile == profile, key
