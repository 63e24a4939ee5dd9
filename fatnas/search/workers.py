"""More worker processes of one Optuna search on this machine: each is `fatnas search --join` of the run."""
from __future__ import annotations

import subprocess
import sys

from ..runs.store import Run
from .evaluate import SearchSettings


def start_workers(run: Run, count: int, settings: SearchSettings, storage: str | None = None) -> list[subprocess.Popen]:
    """`count` more worker processes on this machine, each `fatnas search --join` of the run with this
    process's device and threads."""
    command = [sys.executable, "-m", "fatnas.cli", "search", "--join", str(run.path.resolve()), "--quiet",
               "--device", settings.device, "--threads", str(settings.threads)]
    if storage is not None:
        command += ["--storage", storage]
    return [subprocess.Popen(command, stdout=subprocess.DEVNULL) for _ in range(count)]


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
