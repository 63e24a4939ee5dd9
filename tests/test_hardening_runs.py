"""One broken run never breaks another: a damaged run.yaml or trials.csv is one line naming the file, and every
other run still lists, opens and exports. Two starts of one run id give one run and one clear error. Records
keep no machine path: the committed ones here (a new run's in tests/test_hardening_secrets.py).
"""
from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fatnas.cli import main
from fatnas.runs.store import RunError, create_run, open_run

from .conftest import ROOT, TINY_PROXY, TINY_SPACE, needs_fashion_mnist
from .tiny_run import copy_run


def cli(*args: str) -> tuple[int, str, str]:
    """`fatnas ARGS` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(args))
    return status, out.getvalue(), err.getvalue()


def _set_budget_text(path: Path) -> None:
    meta = yaml.safe_load(path.read_text())
    meta["budget"]["max_flops"] = "lots"
    path.write_text(yaml.safe_dump(meta, sort_keys=False))


def _truncate(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


DAMAGE = {  # case: (file, what to do to it, words of the one line)
    "run.yaml invalid YAML": ("run.yaml", lambda p: p.write_text("id: [unclosed\nkind: search\n"), "not valid YAML"),
    "run.yaml a list": ("run.yaml", lambda p: p.write_text("- just\n- a list\n"), "not a mapping"),
    "run.yaml empty": ("run.yaml", lambda p: p.write_text(""), "not a mapping"),
    "run.yaml binary": ("run.yaml", lambda p: p.write_bytes(bytes(range(256))), "not text"),
    "run.yaml budget text": ("run.yaml", _set_budget_text, "max_flops: 'lots', not a number"),
    "run.yaml noise text": ("run.yaml", lambda p: p.write_text(p.read_text() + "noise: broken\n"), "noise"),
    "run.yaml huge integer": ("run.yaml", lambda p: p.write_text(p.read_text() + f"huge: {'9' * 5000}\n"),
                              "integer of 5,000 digits"),
    "trials.csv empty": ("trials.csv", lambda p: p.write_bytes(b""), "is empty"),
    "trials.csv truncated": ("trials.csv", _truncate, "truncated"),
    "trials.csv binary": ("trials.csv", lambda p: p.write_bytes(bytes(range(256)) * 4), "not text"),
    "pareto.csv truncated": ("pareto.csv", _truncate, "truncated"),
}


@needs_fashion_mnist
@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_run_is_one_line_and_every_other_run_still_works(case, tiny_run, isolated_dirs):
    root = isolated_dirs / "runs"
    copy_run(tiny_run, root, "good")
    bad = copy_run(tiny_run, root, "bad")
    name, damage, words = DAMAGE[case]
    damage(bad.path / name)

    status, out, err = cli("runs")
    assert status == 0 and "good" in out and "bad" not in out
    assert err.count("\n") == 1 and err.startswith("warning: skipped run 'bad'") and f"{name} " in err, err
    assert words in err and "Traceback" not in err

    commands = [["dashboard", "bad"], ["export", "bad", "--pareto"]]
    if name != "pareto.csv":  # a trial's export reads trials.csv, not the front
        commands.append(["export", "bad", "--trial", "0", "--name", "bad_zero"])
    for command in commands:
        status, out, err = cli(*command)
        assert status == 2, (command, out, err)
        assert err.count("\n") == 1 and err.startswith("error: run 'bad': ") and name in err, (command, err)
    if name == "run.yaml":
        status, out, err = cli("search", "--resume", "bad", "--quiet")
        assert status == 2 and err.count("\n") == 1 and words in err, err

    status, out, err = cli("dashboard", "good")  # the trust scan reads every run: the broken one is skipped
    assert status == 0, err
    assert (root / "good" / "dashboard.html").is_file()
    assert all(line.startswith("warning: ") for line in err.splitlines())
    status, out, err = cli("export", "good", "--pareto")
    assert status == 0, err
    assert list((isolated_dirs / "variants").glob("good_t*.yaml"))


def test_a_damaged_fidelity_study_is_skipped_by_the_trust_scan(isolated_dirs):
    from fatnas.study.trust import find_proxy_trust

    study = create_run("study", root=isolated_dirs / "runs")
    (study.path / "run.yaml").write_text("kind: fidelity\ndataset: [unclosed\n")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        trust = find_proxy_trust({"val_images": 1000}, roots=[isolated_dirs / "runs"])
    assert trust.study is None and err.getvalue().startswith("warning: skipped run 'study'")


@pytest.mark.parametrize("field", ["archs", "proxies", "top_k", "seeds"])
def test_resuming_a_study_whose_run_yaml_lacks_a_field_is_one_line(field, isolated_dirs):
    meta = yaml.safe_load((ROOT / "bench" / "results" / "fidelity_pilot" / "run.yaml").read_text())
    study = create_run("study", root=isolated_dirs / "runs")
    meta.pop(field) if field != "seeds" else meta["seeds"].pop("study")
    (study.path / "run.yaml").write_text(yaml.safe_dump({**meta, "id": "study"}, sort_keys=False))
    status, _, err = cli("fidelity", "--resume", "study")
    assert status == 2 and err.count("\n") == 1 and "lacks" in err and field in err, err


def test_a_run_id_taken_at_the_same_moment_is_one_clear_error(isolated_dirs):
    create_run("taken")
    with pytest.raises(RunError, match="run 'taken' already exists in .*; pick another --run-id or --resume it"):
        create_run("taken")


@pytest.mark.slow
@needs_fashion_mnist
def test_two_starts_of_one_run_id_give_one_run_and_one_clear_error(isolated_dirs):
    import os

    args = [sys.executable, str(ROOT / "cli.py"), "search", "--budget", "6MFLOPs", "--space", str(TINY_SPACE),
            "--trials", "1", "--quiet", "--no-references", *TINY_PROXY, "--run-id", "same"]
    starts = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                               env=dict(os.environ)) for _ in range(2)]
    results = [(p.wait(timeout=600), *p.communicate()) for p in starts]
    assert sorted(status for status, _, _ in results) == [0, 2], results
    err = next(err for status, _, err in results if status == 2)
    assert err.count("\n") == 1 and "run 'same' already exists" in err and "Traceback" not in err
    assert [p.name for p in (isolated_dirs / "runs").iterdir()] == ["same"]
    assert len(open_run("same").trials()) >= 1


def machine_paths(meta: dict) -> list[str]:
    """`command:`, `space_source:` and latency-table paths that begin with `/` (a path of the machine)."""
    latency = meta.get("latency") or {}
    values = dict(command=meta.get("command"), space_source=meta.get("space_source"),
                  table=latency.get("table"), model=latency.get("model"))
    return [f"{k}: {v}" for k, v in values.items() if isinstance(v, str) and (v.startswith("/") or " /" in v)]


def test_committed_run_records_hold_no_machine_path():
    tracked = subprocess.run(["git", "ls-files", "bench/results", "runs", "variants"], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    records = [ROOT / p for p in tracked if p.endswith("run.yaml")]
    assert records, "no committed run.yaml found"
    found = {str(p.relative_to(ROOT)): machine_paths(yaml.safe_load(p.read_text())) for p in records}
    assert {k: v for k, v in found.items() if v} == {}


def test_a_run_id_taken_between_the_check_and_the_mkdir_is_still_one_clear_error(isolated_dirs, monkeypatch):
    real_mkdir = Path.mkdir

    def other_process_wins(self, *args, **kwargs):  # the folder appears just before this process makes it
        if self.name == "raced" and not self.exists():
            real_mkdir(self)
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", other_process_wins)
    with pytest.raises(RunError, match="run 'raced' already exists"):
        create_run("raced")


def _append_many(path: str, worker: int, count: int) -> None:
    from fatnas.runs.store import Run

    for i in range(count):
        Run(Path(path)).append_rows("rows.csv", [dict(worker=worker, i=i)], ["worker", "i"])


def test_processes_appending_rows_to_one_run_lose_none(isolated_dirs):
    import multiprocessing

    run = create_run("rows")
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=_append_many, args=(str(run.path), w, 40)) for w in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    table = run.read_table("rows.csv")
    assert len(table) == 120 and not table.duplicated().any()


@pytest.mark.parametrize("storage", ["sqlite:///gone.db", "gone.log"])
def test_sync_from_a_storage_file_that_is_not_there_creates_nothing(storage, isolated_dirs, monkeypatch):
    monkeypatch.chdir(isolated_dirs)
    status, _, err = cli("sync", "lost", "--storage", storage)
    assert status == 2 and err.count("\n") == 1 and "no such file" in err, err
    assert not list(isolated_dirs.glob("gone*")) and not (isolated_dirs / "runs" / "lost").exists()


def test_resuming_a_search_whose_study_is_missing_refuses_and_changes_nothing(tiny_run, isolated_dirs):
    run = copy_run(tiny_run, isolated_dirs / "runs", "lost")
    (run.path / "study.db").unlink()
    before = {path.name: path.read_bytes() for path in run.path.iterdir() if path.is_file()}
    status, _, err = cli("search", "--resume", "lost", "--quiet")
    assert status == 2 and err.count("\n") == 1 and "study file" in err and "missing" in err, err
    after = {path.name: path.read_bytes() for path in run.path.iterdir() if path.is_file()}
    assert after == before  # no new study.db, trials.csv and run.yaml as they were
