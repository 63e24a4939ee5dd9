"""Ray runtimes on loopback only, and a search on a real two-node Ray cluster on this machine.

A search's own local runtime listens on 127.0.0.1 only; a two-node cluster (`tests/ray_nodes.py`,
both nodes on 127.0.0.1) runs a search joined with --ray-address to its target, and again with the
worker node killed while both nodes train: the search still reaches its target, nothing is lost
or doubled. The tests stop every node they start.
"""
from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from fatnas.runs.store import open_run

from .conftest import ROOT, TINY_SPACE, needs_fashion_mnist
from .ray_nodes import LocalCluster

pytest.importorskip("ray")

SEARCH = [sys.executable, str(ROOT / "cli.py"), "search", "--space", str(TINY_SPACE), "--sampler", "random",
          "--proxy-images", "256", "--proxy-epochs", "1", "--batch-size", "32", "--no-references", "--threads", "1",
          "--backend", "ray", "--quiet"]
TRAINED = ["COMPLETE", "PRUNED"]


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children.get(found[-1], [])
    return found


def listening_hosts(pids: list[int]) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The local addresses of TCP sockets listening in these processes (from /proc/net/tcp and tcp6)."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    hosts = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                hosts.add(proc_net_address(fields[1].rsplit(":", 1)[0]))
    return hosts


def proc_net_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """/proc/net's hex address: 32-bit words, each in the host's (little-endian) byte order."""
    raw = b"".join(bytes.fromhex(text[i:i + 8])[::-1] for i in range(0, len(text), 8))
    address = ipaddress.ip_address(raw)
    return getattr(address, "ipv4_mapped", None) or address




def run_search(runs: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SEARCH, *args], env=dict(os.environ, FATNAS_RUNS_DIR=str(runs)), cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


@needs_fashion_mnist
def test_a_searchs_own_ray_runtime_listens_on_loopback_only(isolated_dirs):
    runs = isolated_dirs / "runs"
    proc = subprocess.Popen([*SEARCH, "--trials", "2", "--run-id", "local"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=dict(os.environ, FATNAS_RUNS_DIR=str(runs)))
    hosts: set[str] = set()
    while proc.poll() is None:  # the runtime's servers, sampled while the search runs
        hosts |= listening_hosts(descendants(proc.pid))
        time.sleep(0.5)
    assert proc.returncode == 0, proc.stderr.read().decode()[-3000:]
    beyond = {str(h) for h in hosts if not h.is_loopback}
    assert hosts and not beyond, f"listening beyond loopback: {beyond}"
    cluster = yaml.safe_load((runs / "local" / "run.yaml").read_text())["ray"]["cluster"]
    assert cluster["node_addresses"] == ["127.0.0.1"]


def training(raylet: int) -> bool:
    """True while a process of that node runs a Tune trial's training (Ray titles it `ray::<actor>.train()`)."""
    for pid in descendants(raylet):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            continue
        if title.startswith("ray::") and ".train" in title:
            return True
    return False


def check_target_reached_once_each(run_id: str, target: int) -> pd.DataFrame:
    """The run reached its target, and its rows match its study: each finished trial once."""
    run = open_run(run_id)
    trials = run.trials()
    assert trials["trial"].is_unique and trials["state"].isin(TRAINED).sum() == target
    study = optuna.load_study(study_name=run_id, storage=f"sqlite:///{run.path / 'study.db'}")
    finished = sorted(t.number for t in study.trials if t.state.is_finished())
    assert sorted(trials["trial"]) == finished
    assert run.read_meta()["ray"]["finished"] == "target"
    return trials


@needs_fashion_mnist
def test_a_two_node_cluster_runs_a_search_and_survives_losing_a_node(isolated_dirs):
    runs = isolated_dirs / "runs"
    with LocalCluster(workers=1, cpus=1) as cluster:
        assert cluster.address.startswith("127.0.0.1:") and cluster.nodes == 2
        joined = ["--ray-address", cluster.address, "--cpus-per-trial", "1", "--max-concurrent", "2"]

        out = run_search(runs, "--trials", "3", "--run-id", "two", *joined)
        assert out.returncode == 0, out.stderr[-3000:]
        trials = check_target_reached_once_each("two", 3)
        assert trials["worker"].str.match(r"^[^:]+:\d+$").all()  # host:pid of the trial's Ray worker
        ray_meta = open_run("two").read_meta()["ray"]
        assert ray_meta["cluster"]["nodes"] == 2 and ray_meta["cluster"]["node_addresses"] == ["127.0.0.1"]

        # again, killing the worker node while both nodes train (one trial each: 1 CPU per node and per trial)
        proc = subprocess.Popen([*SEARCH, "--trials", "5", "--run-id", "lost", *joined], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env=dict(os.environ, FATNAS_RUNS_DIR=str(runs)))
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline and not training(cluster.worker_raylet):
            time.sleep(0.1)
        assert proc.poll() is None, f"the search ended before the node was lost: {proc.stderr.read().decode()[-2000:]}"
        cluster.kill_worker()
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err.decode()[-3000:]
        trials = check_target_reached_once_each("lost", 5)
        assert set(trials["state"]) <= {*TRAINED, "FAIL"}
        # the trial lost with its node ran again on the head, or (lost twice) is recorded FAIL
        assert open_run("lost").read_meta()["ray"]["retried_trials"] + (trials["state"] == "FAIL").sum() >= 1


@pytest.mark.parametrize("address, before, after", [
    (None, None, "0"),  # a runtime fatnas starts itself
    ("127.0.0.1:6379", None, "0"),
    ("localhost:6379", None, "0"),
    ("10.1.2.3:6379", None, None),  # a real cluster: its nodes must reach each other
    (None, "1", "1"),  # the user's own choice wins
])
def test_ray_is_kept_on_loopback_only_where_fatnas_owns_the_runtime(monkeypatch, address, before, after):
    from fatnas.search.ray_backend.options import RAY_CLUSTER_ENV, keep_ray_on_loopback

    monkeypatch.delitem(sys.modules, "ray")  # as in a fresh CLI process (restored afterwards)
    if before is None:
        monkeypatch.delenv(RAY_CLUSTER_ENV, raising=False)
    else:
        monkeypatch.setenv(RAY_CLUSTER_ENV, before)
    keep_ray_on_loopback(address)
    assert os.environ.get(RAY_CLUSTER_ENV) == after
