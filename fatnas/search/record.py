"""A search in its run folder: the run.yaml view of its settings and back (for --resume and --join), the
storage of its study, and `sync_run`, which rebuilds the folder from the study on any machine."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import FatnasError, shown
from ..estimate.base import make_estimator
from ..estimate.cost import Budget, flop_convention
from ..estimate.data import DataSplit
from ..estimate.latency import latency_source
from ..estimate.latency.table import checked_table_path
from ..estimate.liveness import space_liveness
from ..estimate.proxy import ProxySettings
from ..model.space import space_from_dict
from ..paths import portable_path
from ..runs.store import Run, RunError, create_run, open_run
from .evaluate import SearchSettings, objectives
from .storage import (
    WORKER_STORAGE_ENV,
    Heartbeat,
    check_study_file,
    has_masked_password,
    mask_password,
    normalize_storage,
    open_storage,
    storage_file,
    without_password,
)


def settings_to_meta(settings: SearchSettings) -> dict[str, Any]:
    """The run.yaml view of the settings (round-trips through `settings_from_meta`)."""
    return dict(objectives=objectives(settings.estimator), space=settings.space.to_dict(),
                space_source=settings.space.source, budget=settings.budget.to_dict(),
                budget_text=settings.budget.describe(),
                proxy=settings.proxy.to_dict(), trials=settings.trials, timeout_s=settings.timeout_s,
                sampler=settings.sampler, seeds=dict(sampler=settings.seed, proxy=settings.proxy.seed,
                                                     data_split=settings.seed),
                dataset=settings.dataset, data_dir=settings.data_dir, classes=list(settings.classes) or None,
                latency=dict(warmup=settings.latency_warmup, repeats=settings.latency_repeats,
                             # then device, resolution, batch_size: of the latency's source
                             model=portable_path(settings.latency_model) if settings.latency_model else None,
                             **latency_source(latency_model=settings.latency_model, device=settings.device,
                                              threads=settings.threads, res=settings.space.resolution)),
                threads=settings.threads,
                references=settings.references, early_stopping=settings.early_stopping,
                prescreen=dict(proxy=settings.prescreen, keep=settings.prescreen_keep),
                collapse_inert=settings.collapse_inert, noise_seeds=settings.noise_seeds,
                heartbeat=dict(interval_s=settings.heartbeat.interval_s, grace_s=settings.heartbeat.grace_s),
                liveness=space_liveness(settings.space, settings.proxy.res).to_dict(),
                **({} if settings.estimator == "proxy" else estimator_record(settings)))


def validation_images(settings: SearchSettings, data: DataSplit) -> int:
    """How many validation images a candidate's accuracy is measured on: the estimator's count, or all the split has."""
    wanted = settings.proxy.val_images
    if settings.estimator != "proxy":
        wanted = getattr(make_estimator(settings.estimator, device=settings.device), "val_images", wanted)
    return min(wanted, len(data.val_x))


def estimator_record(settings: SearchSettings) -> dict[str, Any]:
    """run.yaml's name of a search's estimator other than the proxy, with its provenance (`supernet:ID@sha256`)."""
    estimator = make_estimator(settings.estimator, device=settings.device)
    return dict(estimator=settings.estimator, estimator_provenance=getattr(estimator, "provenance", settings.estimator))


def settings_from_meta(meta: dict[str, Any], **changes: Any) -> SearchSettings:
    """Rebuild the settings of a recorded run (for --resume), with some values changed."""
    space = space_from_dict(meta["space"], source=meta.get("space_source", "run.yaml"))
    budget = Budget(**meta["budget"])
    values = dict(space=space, budget=budget, proxy=ProxySettings(**meta["proxy"]), trials=meta["trials"],
                  timeout_s=meta.get("timeout_s"), sampler=meta["sampler"], seed=meta["seeds"]["sampler"],
                  dataset=meta["dataset"], data_dir=_absolute(meta.get("data_dir")),
                  latency_warmup=meta["latency"]["warmup"], latency_repeats=meta["latency"]["repeats"],
                  references=meta.get("references", True), early_stopping=meta.get("early_stopping", True),
                  threads=meta.get("threads", 1), collapse_inert=meta.get("collapse_inert", False),
                  latency_model=checked_table_path(_absolute(meta["latency"].get("model")), space),  # gone: refused
                  classes=tuple(meta.get("classes") or ()),
                  estimator=meta.get("estimator", "proxy"), noise_seeds=int(meta.get("noise_seeds") or 1))
    prescreen = meta.get("prescreen") or {}
    values.update(prescreen=prescreen.get("proxy"), prescreen_keep=prescreen.get("keep", 0.25))
    if meta.get("heartbeat"):
        values.update(heartbeat=Heartbeat(**meta["heartbeat"]))
    device = changes.pop("device", None)
    if device is not None:  # each worker's own device
        values.update(proxy=dataclasses.replace(values["proxy"], device=device))
    values.update({k: v for k, v in changes.items() if v is not None})
    return SearchSettings(**values)


def _absolute(path: str | None) -> str | None:
    """A path run.yaml records relative to the working folder, made absolute (Ray trials run in other folders)."""
    return str(Path(path).resolve()) if path else None


def resume_settings(run: Run, backend: str, **changes: Any) -> SearchSettings:
    """The recorded settings of a search run to continue or join, with this worker's changes
    (trials, timeout_s, device, threads; None keeps the recorded value)."""
    meta = run.read_meta()
    if meta.get("kind") != "search":
        raise FatnasError(f"run {run.id!r} is not a search run; --resume and --join take a search run id")
    if meta.get("backend", "optuna") != backend:
        backend = meta.get("backend")
        raise FatnasError(f"run {run.id!r} used backend {backend!r}; resume it with --backend {backend}")
    return settings_from_meta(meta, **changes)


def record_run(run: Run, settings: SearchSettings, backend: str, argv: list[str] | None = None,
               storage: str | None = None, validation_images: int | None = None) -> None:
    """Write run.yaml (command, settings, seeds, versions, hardware, storage with no password, and the validation
    images an accuracy is measured on, where the data set is known); a run of either backend also gets its Optuna
    study, holding a copy of run.yaml. `storage` None: the run's study.db."""
    fields = dict(backend=backend, **settings_to_meta(settings))
    if validation_images is not None:
        fields["validation_images"] = validation_images
    if storage is not None:
        fields["storage"] = mask_password(storage)
    run.record("search", fields, dataset=settings.dataset, flop_convention=flop_convention(settings.space.resolution),
               argv=argv)
    from .optuna_backend import create_study

    create_study(open_storage(storage or run.default_storage, settings.heartbeat), run.id, run.read_meta())


def check_storage(url: str | None, backend: str, heartbeat: Heartbeat = Heartbeat()) -> str | None:
    """A checked, reachable `--storage` URL (None: the run's study.db); only the optuna backend takes one."""
    if url is None:
        return None
    from .backend import get_backend

    get_backend(backend).check(storage=url)
    url = normalize_storage(url)
    open_storage(url, heartbeat)
    return url


def storage_of(run: Run, given: str | None) -> str:
    """The storage a worker of `run` opens: `given`, else the one its starting process handed it through
    the environment (`search --workers`), else run.yaml's (which must then hold no masked password)."""
    given = given if given is not None else os.environ.get(WORKER_STORAGE_ENV) or None
    url = normalize_storage(run.storage_url)  # a file's path is recorded relative to the working folder
    if given is not None:
        return check_same_storage(run, normalize_storage(given), url)
    if has_masked_password(url):
        raise FatnasError(f"run {run.id!r} keeps its study in {url}, whose password run.yaml does not record; "
                          "pass --storage URL with the password (or leave it out of the URL and set PGPASSWORD)")
    return url


def check_recorded_study(run: Run, url: str) -> None:
    """The study a resumed or joined run continues must be where run.yaml says. A missing one is refused and
    never made anew: a new study would start again at trial 0 and rewrite the run's tables."""
    from .optuna_backend import study_names

    fix = "restore it from a copy, or start a new run (a resume continues the recorded study, never a new one)"
    path = storage_file(url)
    if path is not None and not path.is_file():
        raise FatnasError(f"run {run.id!r}: its study file {shown(str(path), 200)} is missing; {fix}")
    if run.id not in study_names(open_storage(url, None)):
        raise FatnasError(f"run {run.id!r}: {shown(mask_password(url), 200)} holds no study named {run.id!r}; {fix}")


def check_same_storage(run: Run, given: str, recorded: str) -> str:
    """`given` where it names the storage run.yaml records (passwords aside); another one is refused, since a
    study opened there would be a new one: a resumed search would fork, a sync find nothing."""
    if without_password(given) != without_password(recorded):
        raise FatnasError(f"run {run.id!r} keeps its study in {mask_password(recorded)}, not in --storage "
                          f"{mask_password(given)}; leave --storage out, or give the run's own storage "
                          "(with its password)")
    return given


def record_target(run: Run, settings: SearchSettings, storage_url: str) -> None:
    """A raised `--trials` (`search --resume` or `--join`) is the search's target from now on: run.yaml
    and the study's copy of it record it (a lower one only stops this worker sooner)."""
    from .optuna_backend import RUN_META_ATTR, load_study

    if not (run.path / "run.yaml").is_file():  # a bare folder (the Python API, tests): nothing recorded
        return
    with run.lock():
        meta = run.read_meta()
        if settings.trials <= (meta.get("trials") or 0):
            return
        meta["trials"] = settings.trials
        run.write_meta(meta)
    load_study(open_storage(storage_url, None), run.id).set_user_attr(RUN_META_ATTR, meta)


def sync_run(run_id: str, storage: str | None = None, root: Path | None = None) -> Run:
    """Rebuild `runs/<id>/` (run.yaml, trials.csv, pareto.csv, configs/, references.csv) from the study
    in the storage; without a run folder here, `storage` must be given."""
    from .optuna_backend import REFERENCES_ATTR, RUN_META_ATTR, load_study, publish_study

    try:
        run: Run | None = open_run(run_id, root)
    except RunError:
        run = None
    if run is None and storage is None:
        raise FatnasError(f"run {run_id!r} is not here; pass --storage URL of its study to rebuild it")
    url = storage_of(run, storage) if run is not None else normalize_storage(storage)
    check_study_file(url)
    study = load_study(open_storage(url, None), run.id if run is not None else run_id)
    if run is None:
        meta = study.user_attrs.get(RUN_META_ATTR)
        if not meta:
            raise FatnasError(f"study {run_id!r} holds no fatnas run record; it was not made by `fatnas search`")
        run = create_run(run_id, root)
        run.write_meta(meta)
    references = study.user_attrs.get(REFERENCES_ATTR)
    if references:
        run.write_table("references.csv", pd.DataFrame(references))
    publish_study(run, study)
    return run
