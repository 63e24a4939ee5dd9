"""Running a study to its end and analysing it (also while it runs).
"""
from __future__ import annotations

import pandas as pd

from ...estimate.data import DataSplit, settings_data
from ...estimate.proxy import configure_threads
from ...runs.store import Run
from .analysis import correlations, reliability, seed_spread
from .jobs import execute, finished_networks, plan_jobs, read_rows, study_architectures
from .report import write_report
from .settings import StudySettings
from .specs import CSV_COLUMNS


def run_study(run: Run, settings: StudySettings, *, data: DataSplit | None = None,
              progress: bool = True) -> pd.DataFrame:
    """Run (or continue) a study in `run`; returns the correlation table (also in correlations.csv)."""
    from tqdm.auto import tqdm

    configure_threads(settings.threads)
    data = data if data is not None else settings_data(settings)
    archs = study_architectures(settings)
    for name, cfg in archs.items():
        if not (run.path / "configs" / f"{name}.yaml").is_file():
            run.write_config(name, cfg, dict(run=run.id, arch=name))
    with run.lock():  # a file from before the metric column, in today's form (rows are appended to it below)
        done = read_rows(run)
        if not done.empty and "metric" not in run.read_table("fidelity.csv"):
            run.write_table("fidelity.csv", done)
    rows = done.to_dict("records")
    finished = {(r["arch"], r["measure"], int(r["seed"])) for r in rows}
    jobs = plan_jobs(settings, archs)
    todo = [job for job in jobs if job.key not in finished]
    with tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc=f"fidelity {run.id}", unit="job",
              disable=not progress, dynamic_ncols=True) as bar:
        for job_rows in execute(todo, settings, data):
            # appended under the run's lock: another process resuming this study at once loses no row
            run.append_rows("fidelity.csv", job_rows, list(CSV_COLUMNS), key=["arch", "measure", "seed", "metric"])
            bar.set_postfix_str(f"{job_rows[0]['arch']} {job_rows[0]['measure']}", refresh=False)
            bar.update()
    return analyse(run, settings)


def analyse(run: Run, settings: StudySettings, *, finished_only: bool = False) -> pd.DataFrame:
    """Write reliability.csv, correlations.csv, seed_spread.csv and fidelity.html; returns the correlations.

    `finished_only` analyses a study still running: only the networks with all their trainings done.
    """
    table = read_rows(run)
    if finished_only:
        table = finished_networks(table, settings)
    reliable = reliability(table, settings)
    summary = correlations(table, settings, reliable)
    run.write_table("reliability.csv", reliable)
    run.write_table("correlations.csv", summary)
    run.write_table("seed_spread.csv", seed_spread(table, settings))
    write_report(run)
    return summary
