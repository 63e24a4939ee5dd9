"""A Ray cluster of one head and worker nodes on this machine, every node on 127.0.0.1 (tests, benchmarks).

`ray start` cannot add a second node on loopback: a node it starts takes the machine's network
address. So this uses Ray's own multi-node test helper (`ray.cluster_utils.Cluster`), in a process
of its own that the tests and benchmarks drive through `LocalCluster`.

    python tests/ray_nodes.py --workers 1 --cpus 1
prints one JSON line {"address": "127.0.0.1:PORT", "nodes": N, "worker_raylet": PID (the last worker
node's raylet, whose children run that node's tasks)}, then reads commands on stdin:
`kill` removes the last worker node at once (all its processes killed); `stop` or end of input
shuts the cluster down.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from fatnas.search.ray_backend.options import keep_ray_on_loopback


class LocalCluster:
    """A `ray_nodes.py` process: `address`, `kill_worker()`, and `stop()` (also on leaving a with-block)."""

    def __init__(self, workers: int = 1, cpus: int = 1, timeout_s: float = 120) -> None:
        env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
        self.proc = subprocess.Popen([sys.executable, __file__, "--workers", str(workers), "--cpus", str(cpus)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                     cwd=Path(__file__).resolve().parent.parent)
        line = self.proc.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError("the Ray test cluster did not start")
        info = json.loads(line)
        self.address, self.nodes, self.worker_raylet = info["address"], info["nodes"], info["worker_raylet"]

    def command(self, text: str) -> str:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def kill_worker(self) -> None:
        """Remove the last worker node at once, as if its machine were lost."""
        assert self.command("kill") == "killed"

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.communicate("stop\n", timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(workers: int, cpus: int) -> None:
    keep_ray_on_loopback(None)
    from ray.cluster_utils import Cluster

    node_args = dict(num_cpus=cpus, node_ip_address="127.0.0.1", include_dashboard=False)
    cluster = Cluster(initialize_head=True, head_node_args=node_args)
    added = [cluster.add_node(num_cpus=cpus, node_ip_address="127.0.0.1") for _ in range(workers)]
    cluster.wait_for_nodes()
    raylets = [process.pid for kind, process in added[-1].live_processes() if kind == "raylet"] if added else [None]
    print(json.dumps(dict(address=cluster.address, nodes=1 + len(added), worker_raylet=raylets[0])), flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "kill" and added:
                cluster.remove_node(added.pop(), allow_graceful=False)
                print("killed", flush=True)
            elif line.strip() == "stop":
                break
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cpus", type=int, default=1)
    args = parser.parse_args()
    serve(args.workers, args.cpus)
