"""The records a run's study and run.yaml keep: objective names that optuna-dashboard shows, a raised target,
and fidelity rows that two processes resuming one study at once both keep.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import optuna
import pytest

from fatnas.runs.store import open_run
from fatnas.search.optuna_backend import RUN_META_ATTR
from fatnas.search.storage import open_storage

from .conftest import ROOT, TINY_PROXY, TINY_SPACE, needs_fashion_mnist, run_cli
from .test_fidelity import HIGH, LOW


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # no request lines in the test output
        pass


@needs_fashion_mnist
def test_optuna_dashboard_names_the_two_objectives_of_a_run_study(tiny_run):
    optuna_dashboard = pytest.importorskip("optuna_dashboard")
    app = optuna_dashboard.wsgi(f"sqlite:///{tiny_run.path / 'study.db'}")
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        with urllib.request.urlopen(f"{base}/api/studies", timeout=60) as reply:
            studies = json.load(reply)["study_summaries"]
        study_id = next(s["study_id"] for s in studies if s["study_name"] == tiny_run.id)
        with urllib.request.urlopen(f"{base}/api/studies/{study_id}", timeout=60) as reply:
            detail = json.load(reply)
    finally:
        server.shutdown()
        server.server_close()
    assert detail["objective_names"] == ["accuracy", "latency_ms"]
    assert detail["directions"] == ["maximize", "minimize"]


@pytest.mark.slow
@needs_fashion_mnist
def test_join_with_a_raised_target_records_it_in_run_yaml_and_the_study(isolated_dirs):
    search = ["search", "--budget", "6MFLOPs", "--space", str(TINY_SPACE), "--quiet", "--no-references",
              "--sampler", "random", *TINY_PROXY]
    out = run_cli(*search, "--trials", "1", "--run-id", "raise")
    assert out.returncode == 0, out.stderr
    out = run_cli("search", "--join", "raise", "--trials", "2", "--quiet")
    assert out.returncode == 0, out.stderr
    run = open_run("raise")
    assert run.read_meta()["trials"] == 2
    study = optuna.load_study(study_name="raise", storage=open_storage(run.storage_url, None))
    assert study.user_attrs[RUN_META_ATTR]["trials"] == 2
    assert study.metric_names == ["accuracy", "latency_ms"]
    assert len(run.trials().query("state in ['COMPLETE', 'PRUNED']")) == 2


@pytest.mark.slow
@needs_fashion_mnist
def test_two_concurrent_fidelity_resumes_of_one_study_lose_no_row(isolated_dirs):
    out = run_cli("fidelity", "--space", str(TINY_SPACE), "--budget", "6MFLOPs", "--archs", "3", "--low", LOW,
                  "--high", HIGH, "--proxies", "params", "--high-seeds", "1", "--spread-seeds", "1",
                  "--no-references", "--quiet", "--run-id", "both")
    assert out.returncode == 0, out.stderr
    run = open_run("both")
    before, (first_low,) = run.read_table("fidelity.csv"), run.read_meta()["lows"]
    # each resume adds its own low fidelity: neither process trains the other's, so a whole-file rewrite
    # by one of them would drop the other's rows
    command = [sys.executable, str(ROOT / "cli.py"), "fidelity", "--resume", "both", "--quiet", "--low"]
    procs = [subprocess.Popen([*command, low], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                              env=dict(os.environ))
             for low in ("train_images=32,val_images=100", "train_images=48,val_images=100")]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    after = run.read_table("fidelity.csv")
    key = ["arch", "measure", "seed", "metric"]
    assert not after.duplicated(key).any()
    kept = before.merge(after, on=key, how="left", indicator=True)
    assert (kept["_merge"] == "both").all()  # every row from before is still there
    lows = run.read_meta()["lows"]
    assert len(lows) == 3 and lows[0] == first_low  # run.yaml kept both added lows
    archs = set(after[after["measure"] == first_low]["arch"])
    for label in lows[1:]:  # the rows of each process's own low fidelity are all there
        assert set(after[after["measure"] == label]["arch"]) == archs, label


def test_a_ray_experiment_from_another_machine_or_user_is_never_unpickled(tmp_path):
    from fatnas.errors import FatnasError
    from fatnas.runs.store import create_run
    from fatnas.search.ray_backend.driver import check_own_experiment, maker

    run = create_run("r", root=tmp_path)
    ray_dir = run.path / "ray"
    ray_dir.mkdir()
    state = ray_dir / "tuner.pkl"
    state.write_bytes(b"not read")
    state.chmod(0o644)
    check_own_experiment(run, ray_dir, dict(made_by=maker()))  # made here, by this user
    check_own_experiment(run, ray_dir, {})  # made before run.yaml named its maker: the files' owner decides
    with pytest.raises(FatnasError, match=r"made on elsewhere by user .*restores only experiments made on this"):
        check_own_experiment(run, ray_dir, dict(made_by=dict(maker(), host="elsewhere")))
    state.chmod(0o666)
    with pytest.raises(FatnasError, match=r"writable by others \(tuner.pkl\)"):
        check_own_experiment(run, ray_dir, dict(made_by=maker()))


def test_two_resumes_adding_low_fidelities_at_once_keep_both_in_run_yaml(isolated_dirs):
    from fatnas.runs.store import new_run
    from fatnas.study.fidelity import StudySettings, add_lows, parse_fidelity, record_study

    from .test_fidelity import tiny_study

    run = new_run("lows", "fidelity", lambda r: record_study(r, tiny_study(), argv=["fatnas", "fidelity"]))
    first = StudySettings.from_meta(run.read_meta())  # both processes read run.yaml before either writes
    second = StudySettings.from_meta(run.read_meta())
    add_lows(run, first, [parse_fidelity("train_images=32,val_images=100")])
    add_lows(run, second, [parse_fidelity("train_images=48,val_images=100")])
    lows = run.read_meta()["lows"]
    assert len(lows) == len(first.lows) + 2 and any("32" in low for low in lows) and any("48" in low for low in lows)
