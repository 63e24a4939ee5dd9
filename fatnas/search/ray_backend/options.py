"""The Ray backend's options: resources per trial, concurrency and the cluster address, checked up front.

Everything here is checked before any run folder exists (the cluster only by a socket to its
address), so a bad option is a one-line error (exit 2 on the command line).
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import socket
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ...errors import FatnasError

# Ray reads this once, at import: "0" makes a node's address 127.0.0.1 (as on macOS), so its servers
# listen on loopback only; otherwise Linux nodes, and any 127.0.0.1 Ray is handed, take the machine's address.
RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
ADDRESS = re.compile(r"^(auto|[A-Za-z0-9.\-]+:\d{1,5}|\[[0-9A-Fa-f:]+\]:\d{1,5})$")


class RayOptionsError(FatnasError):
    """A nonsensical Ray option (resources, concurrency, cluster address)."""


@dataclass(frozen=True)
class RayOptions:
    """Resources per trial, concurrency and where the Ray runtime is.

    A trial runs with as many torch threads as its whole CPUs (`cpus_per_trial` None: the
    settings' `threads`). `address` None starts a local runtime sized to this machine; `auto` or
    HOST:PORT joins a running cluster (`ray start --head`). `max_concurrent` None means cluster
    CPUs // cpus_per_trial (and GPUs // gpus_per_trial when trials take GPUs).
    """

    cpus_per_trial: float | None = None
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    address: str | None = None

    def __post_init__(self) -> None:
        cpus, gpus = _text(self.cpus_per_trial), _text(self.gpus_per_trial)
        if self.cpus_per_trial is not None and (not _number(self.cpus_per_trial) or self.cpus_per_trial <= 0):
            raise RayOptionsError(f"--cpus-per-trial {cpus}: must be a positive number of CPUs")
        if not _number(self.gpus_per_trial) or self.gpus_per_trial < 0:
            raise RayOptionsError(f"--gpus-per-trial {gpus}: must be 0 or a positive number "
                                  "(fractions such as 0.5 share a GPU)")
        if self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
            raise RayOptionsError(f"--gpus-per-trial {gpus}: above 1 it must be a whole number")
        if self.max_concurrent is not None and (isinstance(self.max_concurrent, bool)
                                                or not isinstance(self.max_concurrent, int) or self.max_concurrent < 1):
            raise RayOptionsError(f"--max-concurrent {self.max_concurrent}: must be a positive integer")
        if self.address is not None:
            if not ADDRESS.match(self.address) or (self.address != "auto"
                                                   and not 0 < int(self.address.rsplit(":", 1)[1]) < 65536):
                raise RayOptionsError(f"--ray-address {self.address!r}: accepted forms: auto, HOST:PORT "
                                      "(the head node's `ray start --head --port=PORT`)")
        elif (self.cpus_per_trial or 0) > local_cpus():
            raise RayOptionsError(f"--cpus-per-trial {cpus}: this machine has {local_cpus()} CPUs")
        elif self.gpus_per_trial > torch.cuda.device_count():
            raise RayOptionsError(f"--gpus-per-trial {gpus}: this machine has {torch.cuda.device_count()} CUDA GPUs")

    def resolve(self, threads: int) -> RayOptions:
        """These options with `cpus_per_trial` given (default: `threads`)."""
        return self if self.cpus_per_trial is not None else dataclasses.replace(self, cpus_per_trial=float(threads))

    @property
    def threads(self) -> int:
        """Torch threads of one trial: its whole CPUs, at least one."""
        return max(1, int(self.cpus_per_trial or 1))

    def check_device(self, device: str) -> None:
        """Trials see a GPU only when they ask Ray for one."""
        if device.startswith("cuda") and self.gpus_per_trial == 0:
            raise RayOptionsError("--device cuda with --backend ray needs --gpus-per-trial > 0 "
                                  "(Ray hides GPUs from trials that ask for none)")
        if device == "cpu" and self.gpus_per_trial > 0:
            raise RayOptionsError(f"--gpus-per-trial {self.gpus_per_trial:g} with --device cpu would reserve GPUs "
                                  "no trial uses; add --device cuda")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _text(value: Any) -> str:
    return f"{value:g}" if _number(value) else repr(value)


def local_cpus() -> int:
    """CPUs this process may run on (the affinity mask, which containers narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def on_loopback(address: str | None) -> bool:
    """True for a runtime fatnas starts itself (no address) and for a cluster at a loopback address."""
    if address == "auto":
        address = auto_address()
    return address is None or address.rsplit(":", 1)[0] in LOOPBACK_HOSTS


def keep_ray_on_loopback(address: str | None) -> None:
    """Make the Ray runtime this process starts, or joins on loopback, listen on 127.0.0.1 only.

    Call it before Ray is imported (the CLI does); a user's own RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER wins.
    A cluster at another address is left alone: its nodes must reach each other.
    """
    if not on_loopback(address) or RAY_CLUSTER_ENV in os.environ:
        return
    if "ray" in sys.modules:
        warnings.warn(f"Ray was imported before fatnas could keep its runtime on 127.0.0.1; set {RAY_CLUSTER_ENV}=0 "
                      "before importing ray", RuntimeWarning, stacklevel=2)
        return
    os.environ[RAY_CLUSTER_ENV] = "0"


def check_ray_options(device: str | None = None, **options: Any) -> RayOptions:
    """Validate the ray backend's keyword options (see `RaySearch`) before any run folder exists."""
    unknown = sorted(set(options) - {"cpus_per_trial", "gpus_per_trial", "max_concurrent", "ray_address"})
    if unknown:
        raise RayOptionsError(f"unknown ray backend option(s) {unknown}; accepted: cpus_per_trial, "
                              "gpus_per_trial, max_concurrent, ray_address")
    address = options.pop("ray_address", None)
    result = RayOptions(address=address, **options)
    if device is not None:
        result.check_device(device)
    check_reachable(result.address)
    keep_ray_on_loopback(result.address)
    return result


def auto_address() -> str:
    """What Ray's `auto` finds: RAY_ADDRESS, else the cluster `ray start` last started on this machine."""
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    return current.read_text().strip() if current.is_file() else ""


def check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """A cluster must answer at the address (Ray itself would retry for minutes)."""
    if address is None:
        return
    if address == "auto":
        address = auto_address()
        if ":" not in address:
            raise RayOptionsError("--ray-address auto: no running Ray cluster found from this machine; start one "
                                  "with `ray start --head`, or give HOST:PORT")
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise RayOptionsError(f"--ray-address {address}: nothing answers there ({exc.strerror or exc}); start the "
                              f"head node with `ray start --head --port={port}`") from None


__all__ = ["RayOptions", "RayOptionsError", "check_ray_options", "check_reachable", "keep_ray_on_loopback",
           "local_cpus", "on_loopback"]
