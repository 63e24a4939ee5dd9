"""No password written or shown: one redaction for every form of URL, and a real search against a throwaway
PostgreSQL with a password in each form of `--storage`, scanned everywhere it could leak.

Scanned: every file of the run folder, the study's attributes (and its trials'), the captured output, and
the command lines (`/proc/PID/cmdline`) of the worker processes `--workers 2` starts, read while they run.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from fatnas.errors import FatnasError, redact
from fatnas.runs.store import command_line, open_run
from fatnas.search.storage import has_masked_password, mask_password, normalize_storage, open_storage

from .conftest import ROOT, TINY_SPACE, needs_fashion_mnist
from .postgres import PASSWORD, USER, postgres_server
from .test_hardening_runs import machine_paths

SEARCH = ["search", "--budget", "6MFLOPs", "--space", str(TINY_SPACE), "--quiet", "--sampler", "random",
          "--no-references", "--proxy-images", "128", "--proxy-epochs", "1", "--batch-size", "32", "--trials", "1"]
RAW_AT_PASSWORD = "p@ss:w/rd-7x"  # a raw `@`, `:` and `/` in a password
SPACED_PASSWORD = "my s3cret\tp@ss"  # a space, a tab and a raw `@`


@pytest.mark.parametrize("text, expected", [
    ("postgresql://ann:pw@db:5432/nas", "postgresql://ann:***@db:5432/nas"),
    ("--storage=postgresql://ann:pw@db/nas", "--storage=postgresql://ann:***@db/nas"),
    ("fatnas search --storage=mysql+pymysql://ann:pw@db/nas --trials 4",
     "fatnas search --storage=mysql+pymysql://ann:***@db/nas --trials 4"),
    ("postgresql://ann:p@ss@db/nas", "postgresql://ann:***@db/nas"),
    ("postgresql://ann:a/b:c@db/nas", "postgresql://ann:***@db/nas"),
    ("postgresql://ann@db/nas?password=pw&sslmode=require", "postgresql://ann@db/nas?password=***&sslmode=require"),
    ("postgresql://ann@db/nas?sslmode=require&sslpassword=pw", "postgresql://ann@db/nas?sslmode=require&sslpassword=***"),
    ("error: postgresql://ann:pw@db/nas: refused", "error: postgresql://ann:***@db/nas: refused"),
    ("mysql+pymysql://ann@db/nas", "mysql+pymysql://ann@db/nas"),
    ("sqlite:////tmp/study.db", "sqlite:////tmp/study.db"),
    ("journal:///shared/nas/big.log", "journal:///shared/nas/big.log"),
])
def test_redact_masks_every_form_of_password(text, expected):
    assert redact(text) == expected
    assert redact(expected) == expected  # idempotent


def test_one_argument_with_spaces_and_a_masked_url_is_known_as_masked():
    assert mask_password("postgresql://ann:a b@c@db/nas") == "postgresql://ann:***@db/nas"
    assert has_masked_password("postgresql://ann:***@db/nas")
    assert has_masked_password("postgresql://ann@db/nas?password=***")
    assert not has_masked_password("postgresql://ann:pw@db/nas")


def test_a_raw_at_in_a_password_is_percent_encoded_for_the_driver():
    url = normalize_storage(f"postgresql://ann:{RAW_AT_PASSWORD}@db:5432/nas")
    assert url == "postgresql://ann:p%40ss%3Aw%2Frd-7x@db:5432/nas"
    assert normalize_storage(url) == url  # an encoded one stays as it is


def test_recorded_command_is_typed_form_without_password_or_machine_path():
    argv = [str(ROOT / "cli.py"), "search", "--storage=postgresql://ann:p@ss@db/nas", "--space",
            str(Path.cwd() / "my_space.yaml"), "--trials", "4"]
    line = command_line(argv)
    # quoted for a shell, as the user would type it (`***` would glob)
    assert line == "fatnas search '--storage=postgresql://ann:***@db/nas' --space my_space.yaml --trials 4"
    assert command_line(["/usr/local/bin/fatnas", "runs"]) == "fatnas runs"
    here = Path.cwd()
    files = [str(ROOT / "cli.py"), "search", "--storage", f"sqlite:///{here / 'runs' / 's.db'}",
             f"--storage=journal://{here / 'j.log'}"]
    assert command_line(files) == "fatnas search --storage sqlite:///runs/s.db --storage=journal://j.log"


def _create_role(url: str, user: str, password: str) -> str:
    """A second login role whose password has raw `@`, `:` and `/`; returns its URL with the raw password."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE \"{user}\" LOGIN SUPERUSER PASSWORD '{password}'")
    host = url.rsplit("@", 1)[1]
    return f"postgresql://{user}:{password}@{host}"


def _worker_cmdlines(run_id: str) -> list[str]:
    """Command lines of this machine's processes that are `search --join` workers of the run."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            words = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        line = " ".join(w.decode(errors="replace") for w in words)
        if "--join" in line and run_id in line:
            found.append(line)
    return found


def _search_watching_workers(args: list[str], run_id: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run the CLI; meanwhile collect the command lines of the workers it starts."""
    command = [sys.executable, str(ROOT / "cli.py"), *args]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env=dict(os.environ))
    seen: list[str] = []
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        seen += [line for line in _worker_cmdlines(run_id) if line not in seen]
        time.sleep(0.1)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(command, proc.returncode, out, err), seen


def _study_text(url: str, run_id: str) -> str:
    storage = open_storage(normalize_storage(url), None)
    study = optuna.load_study(study_name=run_id, storage=storage)
    parts = [repr(study.user_attrs), repr(storage.get_study_system_attrs(storage.get_study_id_from_name(run_id)))]
    parts += [repr((t.user_attrs, t.params)) for t in study.trials]
    return "\n".join(parts)


def _leaks(secret: str, texts: dict[str, str]) -> list[str]:
    """Where the secret (or its percent-encoded form, or a part of it longer than 3 characters) appears."""
    from urllib.parse import quote

    pieces = {secret, quote(secret, safe="")} | {p for p in re.split(r"[@:/\s]", secret) if len(p) > 3}
    return [f"{where}: {piece!r}" for where, text in texts.items() for piece in pieces if piece in text]


@pytest.mark.slow
@needs_fashion_mnist
def test_a_password_in_each_url_form_is_written_and_shown_nowhere(isolated_dirs):
    with postgres_server() as url:
        host = url.rsplit("@", 1)[1]
        raw_url = _create_role(url, "raw_at", RAW_AT_PASSWORD)
        query_url = f"postgresql://{USER}@{host}?password={PASSWORD}"
        user_at_url = _create_role(url, "nas@corp", SPACED_PASSWORD)  # the user@server form of hosted services
        _create_role(url, "spacey", SPACED_PASSWORD)
        spaced_query_url = f"postgresql://spacey@{host}?password={SPACED_PASSWORD}"
        forms = {  # run id: (arguments, the URL that opens the study, the password to look for)
            "pg-equals": ([f"--storage={url}"], url, PASSWORD),
            "pg-raw-at": (["--storage", raw_url, "--workers", "2", "--trials", "2"], raw_url, RAW_AT_PASSWORD),
            "pg-query": ([f"--storage={query_url}"], query_url, PASSWORD),
            "pg-user-at": (["--storage", user_at_url], user_at_url, SPACED_PASSWORD),
            "pg-query-space": (["--storage", spaced_query_url], spaced_query_url, SPACED_PASSWORD),
        }
        for run_id, (extra, study_url, secret) in forms.items():
            out, workers = _search_watching_workers([*SEARCH, "--run-id", run_id, *extra], run_id)
            assert out.returncode == 0, out.stderr
            run = open_run(run_id)
            texts = {f"file {p.relative_to(run.path)}": p.read_bytes().decode(errors="replace")
                     for p in run.path.rglob("*") if p.is_file()}
            texts.update(stdout=out.stdout, stderr=out.stderr, study=_study_text(study_url, run_id))
            texts.update({f"worker command line {i}": line for i, line in enumerate(workers)})
            synced = subprocess.run([sys.executable, str(ROOT / "cli.py"), "sync", run_id, "--storage", study_url],
                                    capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=300)
            assert synced.returncode == 0, synced.stderr
            texts.update(sync=synced.stdout + synced.stderr, **{f"synced {p.name}": p.read_text(errors="replace")
                                                                for p in run.path.glob("*.yaml")})
            assert _leaks(secret, texts) == [], run_id
            meta = run.read_meta()
            assert "***" in meta["storage"] and meta["command"].startswith("fatnas search --budget 6MFLOPs --space ")
            # recorded as typed, the space relative to the working folder: no machine path
            assert machine_paths(meta) == [] and meta["space_source"] == "tests/data/tiny_space.yaml"
            if "--workers" in extra:
                assert workers, "the workers' command lines were never seen"
                assert len(run.trials().query("state in ['COMPLETE', 'PRUNED']")) == 2
        # a masked URL cannot open the study: the one line says so, without the password
        out = subprocess.run([sys.executable, str(ROOT / "cli.py"), "search", "--join", "pg-query"],
                             capture_output=True, text=True, cwd=ROOT, env=dict(os.environ), timeout=120)
        assert out.returncode == 2 and "pass --storage URL" in out.stderr and PASSWORD not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1


def test_a_join_naming_the_runs_database_with_its_password_in_the_query_is_the_same_storage():
    from types import SimpleNamespace

    from fatnas.search.record import check_same_storage

    run = SimpleNamespace(id="r")
    recorded = "postgresql://ann:***@db:5432/nas"
    for given in ("postgresql://ann:pw@db:5432/nas", "postgresql://ann@db:5432/nas?password=p@ss&w"):
        assert check_same_storage(run, given, recorded) == given
    with pytest.raises(FatnasError, match="not in --storage"):
        check_same_storage(run, "postgresql://ann@db:5432/other?password=pw", recorded)
