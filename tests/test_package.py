"""The installable package: a wheel installed into a fresh virtual environment works from an empty folder."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pandas as pd
import pytest

from .conftest import ROOT, TINY_PROXY, needs_fashion_mnist

# what a wheel is built from (copied out first: an in-tree build would write build/ into the checkout)
SOURCES = ("fatnas", "pyproject.toml", "README.md")


def build_wheel(out: Path) -> Path:
    """A wheel of this checkout, built offline from a copy of its sources."""
    src = out / "src"
    src.mkdir(parents=True)
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "-w", str(out / "dist"), str(src)], check=True, timeout=300)
    return next((out / "dist").glob("fatnas-*.whl"))


def fresh_venv(path: Path, wheel: Path) -> Path:
    """A venv holding only the wheel's fatnas, which sees this interpreter's dependencies on disk (no network).

    The dependencies' folder is added by a plain path line in a .pth file, so the .pth files in
    it (an editable fatnas install among them) are not run: the wheel's fatnas is the only one.
    """
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "fatnas_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-index",
                    "--no-deps", str(wheel)], check=True, timeout=300)
    return path / "bin"


def user_env() -> dict[str, str]:
    """The environment of a user in a plain shell: no PYTHONPATH, no test overrides of the runs or variants folders."""
    hidden = ("PYTHONPATH", "FATNAS_RUNS_DIR", "FATNAS_VARIANTS_DIR", "FATNAS_HOME")
    return {k: v for k, v in os.environ.items() if k not in hidden}


@pytest.mark.slow
@needs_fashion_mnist
def test_a_wheel_in_a_fresh_venv_runs_every_command_from_an_empty_folder(tmp_path):
    bin_dir = fresh_venv(tmp_path / "venv", build_wheel(tmp_path / "build"))
    work = tmp_path / "empty"
    work.mkdir()

    def fatnas(*args: str) -> str:
        done = subprocess.run([str(bin_dir / "fatnas"), *args], capture_output=True, text=True, cwd=work,
                              env=user_env(), timeout=600)
        assert done.returncode == 0, f"fatnas {' '.join(args)}: {done.stderr[-2000:]}"
        return done.stdout

    where = subprocess.run([str(bin_dir / "python"), "-c", "import fatnas; print(fatnas.__file__)"],
                           capture_output=True, text=True, cwd=work, env=user_env(), check=True).stdout.strip()
    assert Path(where).is_relative_to(tmp_path / "venv"), f"not the wheel's fatnas: {where}"
    assert fatnas("--version").strip() == "fatnas 0.1.0"

    assert "fat_b3" in fatnas("models")
    assert "params:" in fatnas("show", "fat_b0")
    out = fatnas("search", "--budget", "2GFLOPs", "--trials", "2", "--run-id", "wheel-run", "--no-references",
                 "--no-early-stopping", "--quiet", *TINY_PROXY)
    assert "space fat" in out and "Pareto front" in out
    fatnas("dashboard", "wheel-run")
    assert (work / "runs" / "wheel-run" / "dashboard.html").is_file()

    trials = pd.read_csv(work / "runs" / "wheel-run" / "trials.csv")
    trial = int(trials.loc[trials["state"] == "COMPLETE", "trial"].iloc[0])
    fatnas("export", "wheel-run", "--trial", str(trial), "--name", "x")
    assert (work / "variants" / "x.yaml").is_file()
    assert "params:" in fatnas("show", "x")
    site = Path(where).parent.parent
    assert not (site / "runs").exists() and not (site / "variants").exists()


def test_fatnas_home_holds_runs_and_variants_when_set(tmp_path, monkeypatch):
    from fatnas.model.variants import variants_dir
    from fatnas.runs.store import runs_root

    for name in ("FATNAS_RUNS_DIR", "FATNAS_VARIANTS_DIR", "FATNAS_HOME"):
        monkeypatch.delenv(name, raising=False)
    assert (runs_root(), variants_dir()) == (Path("runs"), Path("variants"))  # the working directory
    monkeypatch.setenv("FATNAS_HOME", str(tmp_path))
    assert (runs_root(), variants_dir()) == (tmp_path / "runs", tmp_path / "variants")


def test_files_are_written_whole_or_not_at_all_and_readable_by_everyone(tmp_path):
    from fatnas.paths import atomic_write_bytes

    path = tmp_path / "new" / "model.onnx"
    atomic_write_bytes(path, b"first")
    assert path.read_bytes() == b"first" and path.stat().st_mode & 0o777 == 0o644
    with pytest.raises(TypeError):  # the write fails after the temporary file exists
        atomic_write_bytes(path, "text, not bytes")
    assert path.read_bytes() == b"first" and [p.name for p in path.parent.iterdir()] == ["model.onnx"]
