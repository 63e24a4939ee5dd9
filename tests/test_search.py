"""Search end to end: run files, budget, resume after kill -9, failed trials, seeds, bad input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from fatnas.estimate.cost import fvcore_cost, parse_budget
from fatnas.estimate.proxy import ProxySettings
from fatnas.model.config import FATConfig
from fatnas.model.network import FAT
from fatnas.model.space import load_space
from fatnas.runs.store import create_run, open_run, pareto_mask
from fatnas.search import SearchSettings, run_search, settings_from_meta, settings_to_meta
from fatnas.search.core import MedianStopper

from .conftest import ROOT, TINY_PROXY, TINY_SPACE, needs_fashion_mnist, run_cli

BUDGET = "6MFLOPs"  # at the tiny space's 64 px (3.1-6.8 MFLOPs): excludes about a quarter
SCHEMA = {"trial", "state", "accuracy", "latency_ms", "params", "flops", "train_seconds", "curve", "config",
          "widths_0", "depths_3", "heads_2", "kernels_1", "windows_0", "ffn_ratios_3", "ffn_kernels_0"}


def tiny_settings(**changes) -> SearchSettings:
    space = load_space(TINY_SPACE)
    values = dict(space=space, budget=parse_budget(BUDGET, res=space.resolution),
                  proxy=ProxySettings(train_images=128, epochs=1, batch_size=32, val_images=200),
                  trials=4, sampler="random", latency_warmup=0, latency_repeats=1, references=False)
    values.update(changes)
    return SearchSettings(**values)


@needs_fashion_mnist
def test_cli_search_writes_the_run_files_and_a_front_within_budget(isolated_dirs):
    out = run_cli("search", "--budget", BUDGET, "--space", str(TINY_SPACE), "--trials", "5", "--run-id", "r1",
                  "--quiet", *TINY_PROXY)
    assert out.returncode == 0, out.stderr
    assert "Pareto front" in out.stdout and "fvcore total at 64px" in out.stdout
    run = open_run("r1")
    assert {p.name for p in run.path.iterdir()} >= {"run.yaml", "study.db", "trials.csv", "pareto.csv", "configs"}
    meta = run.read_meta()
    assert meta["seeds"] == {"sampler": 0, "proxy": 0, "data_split": 0}
    assert {"torch", "optuna", "python"} <= set(meta["versions"]) and meta["hardware"]["cpu_count"] >= 1
    assert "search" in meta["command"]
    assert meta["objectives"]["accuracy"].startswith("proxy validation accuracy")  # named wherever it is used
    trials = run.trials()
    assert SCHEMA <= set(trials.columns)
    assert trials["state"].isin(["COMPLETE", "PRUNED"]).sum() == 5
    trained = trials[trials["state"].isin(["COMPLETE", "PRUNED"])]
    assert (trained["val_loss"] > 0).all() and (trained["sotl_e"] > 0).all()  # estimators beside accuracy
    assert trained["curve_slope"].notna().all()
    front = run.pareto()
    assert len(front) >= 1
    assert sorted(p.stem for p in (run.path / "configs").glob("*.yaml")) == sorted(f"trial_{t}" for t in front["trial"])
    budget = parse_budget(BUDGET)
    for _, row in front.iterrows():
        cfg = FATConfig.from_dict(json.loads(row["config"]))
        assert row["flops"] <= budget.max_flops
        assert fvcore_cost(FAT(cfg), cfg.in_chans, 64).flops == row["flops"] <= budget.max_flops
    listing = run_cli("runs")
    assert listing.returncode == 0 and "r1" in listing.stdout and "6.00 MFLOPs" in listing.stdout


@needs_fashion_mnist
def test_infeasible_draws_are_never_trained(isolated_dirs):
    budget = parse_budget("5MFLOPs", res=64)  # about half the tiny space is over it
    run = create_run("r2")
    run_search(run, tiny_settings(trials=3, budget=budget), progress=False)
    trials = run.trials()
    infeasible = trials[trials["state"] == "INFEASIBLE"]
    assert len(infeasible) >= 1
    assert (infeasible["flops"] > budget.max_flops).all()
    assert infeasible["images_seen"].fillna(0).eq(0).all()
    trained = trials[trials["state"].isin(["COMPLETE", "PRUNED"])]
    assert len(trained) == 3 and (trained["flops"] <= budget.max_flops).all()


@pytest.mark.slow  # several whole searches in process: the fast tier's two longest tests
@needs_fashion_mnist
def test_same_seed_same_configs_and_another_seed_differs(isolated_dirs):
    def configs(run_id: str, seed: int) -> list[str]:
        run = create_run(run_id)
        run_search(run, tiny_settings(seed=seed, sampler="random"), progress=False)
        return list(run.trials()["config"])

    assert configs("a", 3) == configs("b", 3)
    assert configs("a2", 3) != configs("c", 4)


@pytest.mark.slow  # several whole searches in process: the fast tier's two longest tests
@needs_fashion_mnist
def test_tpe_start_up_draws_repeat_with_the_seed(isolated_dirs):
    def configs(run_id: str) -> list[str]:
        run = create_run(run_id)
        run_search(run, tiny_settings(seed=1, sampler="tpe", trials=3), progress=False)
        return list(run.trials()["config"])[:3]  # TPE's first 10 draws are seeded random ones

    assert configs("t1") == configs("t2")


@needs_fashion_mnist
def test_a_trial_that_raises_is_recorded_as_failed_and_the_search_goes_on(isolated_dirs, monkeypatch):
    import fatnas.estimate.proxy as evaluate  # the proxy estimator trains through it

    real_train, calls = evaluate.train_proxy, []

    def out_of_memory_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise MemoryError("simulated out of memory")
        return real_train(*args, **kwargs)

    monkeypatch.setattr(evaluate, "train_proxy", out_of_memory_once)
    run = create_run("r3")
    run_search(run, tiny_settings(trials=3), progress=False)
    trials = run.trials()
    failed = trials[trials["state"] == "FAIL"]
    assert len(failed) == 1 and "simulated out of memory" in failed["error"].iloc[0]
    assert trials["state"].isin(["COMPLETE", "PRUNED"]).sum() == 3


@needs_fashion_mnist
def test_ctrl_c_during_a_read_of_the_study_still_fails_the_running_trial_at_once(isolated_dirs, monkeypatch):
    """A Ctrl-C that lands mid-read leaves a cursor (and SQLite's shared lock) in the interrupted frames."""
    import sqlite3

    import fatnas.estimate.proxy as evaluate

    real_train, calls = evaluate.train_proxy, []
    run = create_run("c")

    def interrupted_mid_read(*args, **kwargs):
        calls.append(1)
        if len(calls) < 2:
            return real_train(*args, **kwargs)
        cursor = sqlite3.connect(run.path / "study.db").execute("SELECT * FROM trials")
        cursor.fetchone()  # the statement is open: the database is share-locked until the cursor goes
        held = [cursor]
        held.append(held)  # kept alive by a reference cycle, as the interrupted frames of a real read are
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "train_proxy", interrupted_mid_read)
    with pytest.raises(KeyboardInterrupt):  # not the storage's "database is locked", 120 s later
        run_search(run, tiny_settings(trials=3), progress=False)
    trials = run.trials()
    assert (trials["state"] == "RUNNING").sum() == 0
    assert (trials["error"] == "interrupted (Ctrl-C)").sum() == 1


@needs_fashion_mnist
def test_kill_9_then_resume_loses_no_finished_trial(isolated_dirs):
    runs = isolated_dirs / "runs"
    cmd = [sys.executable, str(ROOT / "cli.py"), "search", "--budget", BUDGET, "--space", str(TINY_SPACE),
           "--trials", "6", "--run-id", "k", "--quiet", "--sampler", "random", "--proxy-images", "1024",
           "--proxy-epochs", "1", "--batch-size", "32", "--no-references"]
    proc = subprocess.Popen(cmd, env=dict(os.environ), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    trials_csv = runs / "k" / "trials.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if trials_csv.is_file() and (pd.read_csv(trials_csv)["state"] == "COMPLETE").sum() >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the search ended before it could be killed"
    time.sleep(0.5)  # into the next trial's training
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = pd.read_csv(trials_csv)
    finished = before[before["state"].isin(["COMPLETE", "PRUNED"])][["trial", "accuracy"]]
    assert len(finished) >= 2

    out = run_cli("search", "--resume", "k", "--quiet")
    assert out.returncode == 0, out.stderr
    after = open_run("k").trials()
    kept = after.merge(finished, on="trial", suffixes=("", "_before"))
    assert len(kept) == len(finished) and (kept["accuracy"] == kept["accuracy_before"]).all()
    assert after["state"].isin(["COMPLETE", "PRUNED"]).sum() == 6
    assert (after["state"] == "RUNNING").sum() == 0
    interrupted = after[after["error"].fillna("").str.contains("interrupted")]
    assert len(interrupted) <= 1 and (interrupted["state"] == "FAIL").all()


@needs_fashion_mnist
def test_prescreen_trains_the_best_scored_of_each_group_and_records_every_score(isolated_dirs):
    run = create_run("p")
    settings = tiny_settings(trials=3, prescreen="naswot", prescreen_keep=1 / 3, early_stopping=False)
    run_search(run, settings, progress=False)
    trials = run.trials()
    trained = trials[trials["state"] == "COMPLETE"]
    screened = trials[trials["state"] == "SCREENED_OUT"]
    assert len(trained) == 3 and len(screened) == 2 * 3
    scored = trials[trials["state"].isin(["COMPLETE", "SCREENED_OUT"])].sort_values("trial")
    assert scored["prescreen_score"].notna().all() and screened["images_seen"].fillna(0).eq(0).all()
    for start in range(0, len(scored), 3):  # drawn in groups of three, the best one trains
        group = scored.iloc[start:start + 3]
        assert group.loc[group["prescreen_score"].idxmax(), "state"] == "COMPLETE"
    again = settings_from_meta(settings_to_meta(settings))
    assert (again.prescreen, again.prescreen_keep, again.prescreen_draws) == ("naswot", 1 / 3, 3)


@needs_fashion_mnist
def test_cli_prescreen_is_recorded_and_kept_on_resume(isolated_dirs):
    out = run_cli("search", "--budget", BUDGET, "--space", str(TINY_SPACE), "--trials", "1", "--run-id", "ps",
                  "--quiet", "--no-references", "--prescreen", "synflow", "--prescreen-keep", "0.5", *TINY_PROXY)
    assert out.returncode == 0, out.stderr
    run = open_run("ps")
    assert run.read_meta()["prescreen"] == {"proxy": "synflow", "keep": 0.5}
    out = run_cli("search", "--resume", "ps", "--trials", "2", "--quiet")
    assert out.returncode == 0, out.stderr
    trials = run.trials()
    assert (trials["state"] == "COMPLETE").sum() + (trials["state"] == "PRUNED").sum() == 2
    assert (trials["state"] == "SCREENED_OUT").sum() == 2


@needs_fashion_mnist
def test_cli_search_on_chosen_classes_records_them_and_resumes_with_them(isolated_dirs, capsys):
    from fatnas.cli import main
    from fatnas.estimate.data import load_dataset
    from fatnas.search import settings_from_meta

    args = ["search", "--budget", BUDGET, "--space", str(TINY_SPACE), "--trials", "1", "--run-id", "upper",
            "--quiet", "--no-references", "--classes", "0,2,4,6", *TINY_PROXY]
    assert main(args) == 0
    assert "fashion-mnist (classes 0,2,4,6) at" in capsys.readouterr().out
    meta = open_run("upper").read_meta()
    assert meta["classes"] == [0, 2, 4, 6] and settings_from_meta(meta).classes == (0, 2, 4, 6)
    data = load_dataset("fashion-mnist", classes=(0, 2, 4, 6))
    assert data.num_classes == 4 and set(data.train_y.tolist()) == set(data.val_y.tolist()) == {0, 1, 2, 3}
    assert meta["validation_images"] == min(meta["proxy"]["val_images"], len(data.val_x))


@pytest.mark.parametrize("given, classes", [
    (None, (0, 2, 4, 6)),  # Fashion-MNIST's default task: the upper-body classes, whose reference repeats
    ("all", ()),
    ("1,3", (1, 3)),
])
def test_a_new_run_takes_the_data_sets_default_classes_unless_told(given, classes):
    import argparse

    from fatnas.cli.common import task_classes

    assert task_classes(argparse.Namespace(classes=given, dataset=None)) == classes
    assert task_classes(argparse.Namespace(classes=None, dataset="cifar10")) == ()


@pytest.mark.parametrize("args, message", [
    (["--budget", "2GB"], "malformed budget '2GB'; accepted forms"),
    (["--budget", "2GFLOPs", "--prescreen", "zen"], "unknown proxy 'zen'; accepted: synflow"),
    (["--budget", "2GFLOPs", "--prescreen-keep", "0.5"], "--prescreen-keep goes with --prescreen"),
    (["--budget", "2GFLOPs", "--prescreen", "naswot", "--prescreen-keep", "1.5"], "must be in (0, 1]"),
    (["--budget", "2GFLOPs", "--prescreen", "naswot", "--prescreen-keep", "0"], "must be in (0, 1]"),
    (["--budget", "2GFLOPs", "--prescreen", "naswot", "--backend", "ray"], "optuna backend only"),
    (["--budget", "2GFLOPs", "--space", "nope"], "search space 'nope' not found"),
    (["--budget", "2GFLOPs", "--sampler", "cmaes"], "unknown sampler 'cmaes'; accepted: tpe, nsga2, gp, random"),
    (["--budget", "2GFLOPs", "--dataset", "cifar10", "--data-dir", "/nonexistent"], "CIFAR-10"),
    (["--budget", "2GFLOPs", "--dataset", "mnist"], "unknown data set 'mnist'"),
    (["--budget", "2GFLOPs", "--classes", "3,3"], "give at least two distinct class numbers"),
    (["--budget", "2GFLOPs", "--classes", "0,10"], "fashion-mnist has classes 0 to 9"),
    (["--budget", "2GFLOPs", "--trials", "0"], "--trials: '0': expected a whole number from 1 to 1,000,000"),
    (["--budget", "2GFLOPs", "--run-id", "bad/id"], "run id 'bad/id' is malformed"),
    (["--resume", "missing-run"], "run 'missing-run' not found"),
])
def test_bad_search_input_exits_2_with_one_line_and_writes_nothing(isolated_dirs, args, message):
    out = run_cli("search", *args)
    assert out.returncode == 2
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1
    runs = isolated_dirs / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def test_median_stopper_compares_only_cost_peers():
    stopper = MedianStopper(min_peers=3)
    peers = [(100, [(1, 0.5), (2, 0.6)])] * 3 + [(1000, [(1, 0.9), (2, 0.95)])] * 5
    assert stopper.should_stop(120, 1, 0.55, peers, checkpoints=4) is True
    assert stopper.should_stop(120, 1, 0.65, peers, checkpoints=4) is False
    assert stopper.should_stop(120, 1, 0.1, peers, checkpoints=2) is False  # never the final value
    assert stopper.should_stop(120, 0, 0.1, peers, checkpoints=4) is False  # a quarter of training is too early
    assert stopper.should_stop(120, 0, 0.1, peers, checkpoints=2) is True  # half of it is not
    assert stopper.should_stop(5000, 1, 0.1, peers, checkpoints=4) is False  # too few peers


def test_pareto_mask_keeps_non_dominated_rows():
    table = pd.DataFrame(dict(accuracy=[0.8, 0.7, 0.9, 0.6], latency_ms=[10.0, 5.0, 20.0, 6.0]))
    assert list(pareto_mask(table)) == [True, True, True, False]


STDLIB_UNDERSCORE_API = {"_replace", "_asdict", "_fields", "_make", "_field_defaults"}  # namedtuple's public API


def underscore_uses(source: str) -> list[str]:
    """Underscore attributes of Ray and Optuna objects, and imports of their private modules, in `source`.

    `self._x` counts when the class derives from a Ray or Optuna class and does not define `_x` itself.
    """
    import ast

    tree = ast.parse(source)
    imports = [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]
    def root(node: ast.AST, alias: ast.alias) -> str:
        return ((node.module or "") if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]

    foreign = {a.asname or a.name.split(".")[0] for node in imports for a in node.names
               if root(node, a) in ("ray", "optuna")}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found += [f"{node.lineno}: import {n}" for n in names if "_private" in n
                      or (n.split(".")[0] in ("ray", "optuna") and any(c.startswith("_") for c in n.split(".")))]
        elif isinstance(node, ast.ClassDef):
            bases = {ast.unparse(b).split(".")[0] for b in node.bases}
            own = {n.name for n in ast.walk(node) if isinstance(n, ast.FunctionDef)}
            own |= {t.attr for n in ast.walk(node) if isinstance(n, (ast.Assign, ast.AnnAssign))
                    for t in (n.targets if isinstance(n, ast.Assign) else [n.target]) if isinstance(t, ast.Attribute)}
            if bases & foreign:
                found += [f"{n.lineno}: self.{n.attr}" for n in ast.walk(node) if isinstance(n, ast.Attribute)
                          and isinstance(n.value, ast.Name) and n.value.id == "self" and n.attr.startswith("_")
                          and not n.attr.startswith("__") and n.attr not in own]
        elif (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
              and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
              and node.attr not in STDLIB_UNDERSCORE_API and ast.unparse(node) != "os._exit"):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def test_fatnas_uses_only_public_ray_and_optuna_apis():
    """No `_private` module and no underscore attribute of a Ray or Optuna object anywhere under fatnas/."""
    paths = sorted((ROOT / "fatnas").rglob("*.py"))
    assert ROOT / "fatnas/search/ray_backend/driver.py" in paths  # packages are scanned too
    found = {str(path.relative_to(ROOT)): underscore_uses(path.read_text()) for path in paths}
    assert {name: uses for name, uses in found.items() if uses} == {}
    before = """  # what the Ray backend used before it moved to public APIs: the check finds each
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch
def check():
    from ray._private.services import canonicalize_bootstrap_address
class Search(OptunaSearch):
    def tell(self, trial_id):
        self._ot_study.tell(self._ot_trials[trial_id])
class Bands(ASHAScheduler):
    def __init__(self):
        self._bands = {}
    def add(self, peers, trial):
        self._trial_info[trial] = peers._trial_info.pop(trial)
"""
    uses = " ".join(underscore_uses(before))
    for name in ("ray._private", "self._ot_study", "self._ot_trials", "self._trial_info", "peers._trial_info"):
        assert name in uses
    assert "self._bands" not in uses  # its own attribute
