"""More worker processes of one Optuna search on this machine: each is `fatnas search --join` of the run."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..runs.store import Run
from .evaluate import SearchSettings
from .storage import WORKER_STORAGE_ENV


def start_workers(run: Run, count: int, settings: SearchSettings, storage: str | None = None) -> list[subprocess.Popen]:
    """`count` more worker processes on this machine, each `fatnas search --join` of the run with this
    process's device and threads. The storage URL (it may hold a password) goes through their environment,
    never their command line."""
    command = [sys.executable, "-m", "fatnas.cli", "search", "--join", str(run.path.resolve()), "--quiet",
               "--device", settings.device, "--threads", str(settings.threads)]
    env = {key: value for key, value in os.environ.items() if key != WORKER_STORAGE_ENV}
    # the workers import this process's fatnas, wherever they start (not another copy installed or in their folder)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    if storage is not None:
        env[WORKER_STORAGE_ENV] = storage
    return [subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env) for _ in range(count)]


def wait_workers(workers: list[subprocess.Popen]) -> None:
    """Wait for the workers; a worker that failed is an error."""
    codes = [w.wait() for w in workers]
    if any(codes):
        raise RuntimeError(f"worker processes exited with {codes}; see their messages above")


def stop_workers(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
            worker.wait()
