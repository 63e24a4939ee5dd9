"""Shared fixtures: tests write only into temporary folders; the slow tier is marked here."""
from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from fatnas.search.ray_backend.options import keep_ray_on_loopback

# The suite gives the same verdict on the same code: Hypothesis draws the same examples every run ("ci", the
# default); `HYPOTHESIS_PROFILE=explore` (make test-explore) draws fresh ones, and what it finds becomes an @example.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("explore", derandomize=False, database=None, print_blob=True)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Every Ray runtime the tests start, in this process or in the CLI processes it starts, listens on 127.0.0.1 only.
keep_ray_on_loopback(None)
# OpenMP threads that spin while waiting stall badly when other processes share the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
TINY_SPACE = ROOT / "tests" / "data" / "tiny_space.yaml"
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# fast proxy settings for search tests
TINY_PROXY = ["--proxy-images", "128", "--proxy-epochs", "1", "--batch-size", "32"]

needs_fashion_mnist = pytest.mark.skipif(not FASHION_MNIST.is_dir(),
                                         reason="apt-get install dataset-fashion-mnist (make test does)")
# What a slow test's own source calls: a subprocess (the CLI, a build), a browser, or kill -9;
# tests using the SLOW_FIXTURES (a Ray runtime) are slow too. `pytest -m "not slow"` is the fast tier.
SLOW_CALLS = ("run_cli(", "subprocess.", "render_page(", "SIGKILL")
SLOW_FIXTURES = ("ray_cluster",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that starts processes, Ray or a browser, or kills a process, as slow."""
    for item in items:
        if is_slow(item):
            item.add_marker(pytest.mark.slow)


def is_slow(item: pytest.Item) -> bool:
    """True for a test whose source makes a SLOW_CALL or that uses a SLOW_FIXTURE."""
    function = getattr(item, "function", None)
    source = inspect.getsource(function) if function is not None else ""
    return (any(call in source for call in SLOW_CALLS)
            or any(name in getattr(item, "fixturenames", ()) for name in SLOW_FIXTURES))


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Runs and exported variants go to a temporary folder, never to runs/ or variants/."""
    monkeypatch.setenv("FATNAS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("FATNAS_VARIANTS_DIR", str(tmp_path / "variants"))
    return tmp_path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory):
    """The small real search run of tests/tiny_run.py, made once per session; read-only (copy it to change it)."""
    from .tiny_run import shared_tiny_run

    return shared_tiny_run(tmp_path_factory)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread per test: deterministic, and fast even when other processes share the cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `python cli.py ARGS` in a subprocess with the test's environment."""
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ), cwd=ROOT)
