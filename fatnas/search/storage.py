"""Where a search's Optuna study lives: the run's study.db, a database server, or a journal file.

Accepted forms of `--storage`: `sqlite:///PATH`, `postgresql://USER[:PASSWORD]@HOST[:PORT]/DB`,
`mysql://USER[:PASSWORD]@HOST[:PORT]/DB` (any SQLAlchemy driver suffix such as `+psycopg2`), and
a journal file for shared file systems, `journal:///ABSOLUTE/PATH.log` or any path ending in `.log`.
Dead workers are found by heartbeats: each running trial records one every `heartbeat_s`, and a
trial silent for `grace_s` is failed by whichever worker looks next. RDB storages keep Optuna's
own heartbeats; a journal file (which has none) keeps a `heartbeat` user attribute instead.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import quote, unquote

import optuna
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from ..documents import MAX_BYTES, load_text, read_bytes
from ..errors import MASK, FatnasError, redact, shown, split_userinfo

# no form spells a password after a scheme: a message holding them is redacted as a whole
STORAGE_FORMS = ("sqlite:///PATH, postgresql://USER@HOST[:PORT]/DB or mysql://USER@HOST[:PORT]/DB (a password "
                 "after USER and a colon, or in PGPASSWORD), journal:///PATH.log (or PATH.log)")
RDB_SCHEMES = ("sqlite", "postgresql", "mysql")
JOURNAL_PREFIX = "journal://"
# how `search --workers N` hands the storage URL to the worker processes it starts: in their environment
# (readable by the owner only), never on their command line, where `ps` shows it to every user
WORKER_STORAGE_ENV = "FATNAS_WORKER_STORAGE"
MAX_HEARTBEAT_S = 7 * 86_400  # a heartbeat interval or grace period of more than a week watches nothing
JOURNAL_OPERATIONS = range(11)  # the op_code values of Optuna 5's journal (its JournalOperation, not public)
HEARTBEAT_ATTR = "heartbeat"  # journal storages: wall-clock time of the trial's last heartbeat
# SQLAlchemy's default driver of each scheme (another is named in the URL, e.g. postgresql+psycopg2://)
DRIVERS = dict(postgresql="psycopg (pip install 'psycopg[binary]')", mysql="mysqlclient (pip install mysqlclient)")


class StorageError(FatnasError):
    """A malformed or unreachable `--storage`."""


@dataclass(frozen=True)
class Heartbeat:
    """How often a running trial says it is alive, and how long silence means its worker died."""

    interval_s: int = 10
    grace_s: int = 30

    def __post_init__(self) -> None:
        for name, value in (("heartbeat interval", self.interval_s), ("grace period", self.grace_s)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_HEARTBEAT_S:
                raise FatnasError(f"{name} {shown(value)}: must be a whole number of seconds from 1 to "
                                  f"{MAX_HEARTBEAT_S:,} (a week; a thread cannot wait much longer)")
        if self.grace_s <= self.interval_s:
            raise FatnasError(f"grace period {self.grace_s} s: must be longer than the heartbeat interval "
                              f"({self.interval_s} s), e.g. three times it")


def journal_path(url: str) -> Path | None:
    """The file of a journal storage (`journal:///PATH` or `PATH.log`), or None for other URLs."""
    if url.startswith(JOURNAL_PREFIX):
        return Path(url[len(JOURNAL_PREFIX):])
    if "://" not in url and url.endswith(".log"):
        return Path(url)
    return None


def storage_file(url: str) -> Path | None:
    """The file that holds a SQLite or journal storage (None for a database server)."""
    journal = journal_path(url)
    if journal is not None:
        return journal
    return Path(url.split(":///", 1)[1]) if url.startswith("sqlite") and ":///" in url else None


def check_study_file(url: str) -> None:
    """A storage that should hold a study already: its file must be there (opening it would make an empty one)."""
    path = storage_file(url)
    if path is not None and not path.is_file():
        raise StorageError(f"--storage {shown(mask_password(url), 200)}: no such file {shown(str(path), 200)}, so no "
                           "study there (a relative path is read from the folder you run in)")


def normalize_storage(url: str) -> str:
    """A checked storage URL; journal files and SQLite paths made absolute so any folder can join."""
    journal = journal_path(url)
    if journal is not None:
        if not url.removeprefix(JOURNAL_PREFIX).strip("/"):
            raise StorageError(f"--storage {shown(mask_password(url), 200)}: the journal needs a file path; "
                               f"accepted forms: {STORAGE_FORMS}")
        return f"{JOURNAL_PREFIX}{journal.resolve()}"
    scheme = url.split("://", 1)[0].split("+", 1)[0] if "://" in url else ""
    if scheme not in RDB_SCHEMES:
        raise StorageError(f"--storage {shown(mask_password(url), 200)}: unknown form; accepted forms: {STORAGE_FORMS}")
    if scheme == "sqlite":
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if not path:
            raise StorageError(f"--storage {shown(mask_password(url), 200)}: sqlite needs a file path; "
                               f"accepted forms: {STORAGE_FORMS}")
        return f"sqlite:///{Path(path).resolve()}"
    return quote_query(quote_password(url))


def quote_password(url: str) -> str:
    """The URL with its user and password percent-encoded (read as `errors.split_userinfo` reads them, the one
    parse that redaction uses too), so a raw `@`, `/`, `?` or space in them reaches the server whole."""
    parts = split_userinfo(url)
    if parts is None or parts[2] == MASK:
        return url
    scheme, user, password, rest = parts
    return f"{scheme}{quote(unquote(user), safe='')}:{quote(unquote(password), safe='')}{rest}"


def quote_query(url: str) -> str:
    """The URL with each query key and value percent-encoded (a raw `@`, space or `+` in `?password=` would
    otherwise be misread by SQLAlchemy's parser); a value runs to the next `&key=`, `***` stays as it is."""
    head, sep, query = url.partition("?")
    if not sep or not query:
        return url
    pairs = [pair.partition("=") for pair in re.split(r"&(?=[^&=]*=)", query)]
    return f"{head}?" + "&".join(f"{quote(unquote(key), safe='*')}{eq}{quote(unquote(value), safe='*')}"
                                 for key, eq, value in pairs)


def mask_password(url: str) -> str:
    """The URL with its password replaced by `***` (what run.yaml records); `fatnas.errors.redact` of one word."""
    return redact(url, one_word=True)


def without_password(url: str) -> str:
    """The URL with no password at all (neither in the user-info nor in a `?password=`-like query value): what
    names the storage itself, however the password is given."""
    masked = mask_password(url)
    parts = split_userinfo(masked)
    if parts is not None:
        masked = f"{parts[0]}{parts[1]}{parts[3]}"
    base, _, query = masked.partition("?")
    kept = [item for item in query.split("&") if item and not item.endswith(f"={MASK}")]
    return f"{base}?{'&'.join(kept)}" if kept else base


def has_masked_password(url: str) -> bool:
    """Whether the URL's password was masked (run.yaml's copy), so the URL cannot open the storage."""
    parts = split_userinfo(url)
    return (parts is not None and parts[2] == MASK) or f"={MASK}" in url


def check_journal(path: Path) -> None:
    """Refuse a journal file that is not whole, before Optuna reads it or appends to it: every line one JSON
    operation Optuna knows, the last one ended (a cut line would merge with the next one written, bytes after
    it would be read as operations)."""
    if not path.exists():
        return
    lock = optuna.storages.journal.JournalFileSymlinkLock(str(path))  # Optuna's writers hold it: no half a line
    lock.acquire()
    try:
        _check_journal_lines(path, known=set(JOURNAL_OPERATIONS))
    finally:
        lock.release()


def _check_journal_lines(path: Path, known: set[int]) -> None:
    data = read_bytes(path, f"journal {path}", StorageError) if path.stat().st_size <= MAX_BYTES else None
    text = _journal_text(path, data)
    for number, line in enumerate(text.splitlines(), 1):
        try:
            op = json.loads(line)
        except (ValueError, RecursionError):
            op = None
        if not isinstance(op, dict) or op.get("op_code") not in known:
            raise StorageError(f"journal {path}: line {number} is not an Optuna operation ({shown(line, 40)}); "
                               "the file is damaged: restore it from a copy (fatnas appends nothing to it)")


def _journal_text(path: Path, data: bytes | None) -> str:
    """The journal's text; a file cut in the middle of a line, or not text, is a StorageError."""
    if data is None:
        data = path.read_bytes()  # a journal of a long study may pass MAX_BYTES; it is read whole by Optuna anyway
    text = load_text(data, f"journal {path}", StorageError)
    if text and not text.endswith("\n"):
        raise StorageError(f"journal {path}: its last line is cut (a write was interrupted?); restore the file "
                           "from a copy, or remove its last line to drop that operation")
    return text


def open_storage(url: str, heartbeat: Heartbeat | None) -> optuna.storages.BaseStorage:
    """Optuna's storage for a checked URL, with heartbeats where the storage keeps them (None: without)."""
    journal = journal_path(url)
    if journal is not None:
        journal.parent.mkdir(parents=True, exist_ok=True)
        check_journal(journal)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    # SQLite shared by several processes: wait for the file lock instead of failing at once
    engine = dict(connect_args=dict(timeout=120)) if url.startswith("sqlite") else None
    try:
        with warnings.catch_warnings():  # heartbeats are experimental in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            beats = dict(heartbeat_interval=heartbeat.interval_s, grace_period=heartbeat.grace_s) if heartbeat else {}
            return optuna.storages.RDBStorage(url, engine_kwargs=engine, **beats)
    except ImportError:
        scheme = url.split("://", 1)[0]
        driver = DRIVERS.get(scheme, f"the driver that {scheme!r} names")
        raise StorageError(f"--storage {mask_password(url)}: its database driver is missing; "
                           f"install {driver}") from None
    except Exception as exc:  # sqlalchemy's OperationalError and the like: one line, no password
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"--storage {mask_password(url)}: cannot open it: {redact(reason)[:300]}") from None


def keeps_optuna_heartbeats(storage: optuna.storages.BaseStorage) -> bool:
    return isinstance(storage, optuna.storages.RDBStorage)


class HeartbeatThread:
    """Records a running trial's heartbeat every interval until stopped (a context manager)."""

    def __init__(self, storage: optuna.storages.BaseStorage, trial_id: int, heartbeat: Heartbeat) -> None:
        self.beat = self._beat_function(storage, trial_id)
        self.interval_s = heartbeat.interval_s
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name=f"heartbeat-{trial_id}")

    @staticmethod
    def _beat_function(storage: optuna.storages.BaseStorage, trial_id: int) -> Callable[[], None]:
        if keeps_optuna_heartbeats(storage):
            return lambda: storage.record_heartbeat(trial_id)
        return lambda: storage.set_trial_user_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _loop(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            try:
                self.beat()
            except (UpdateFinishedTrialError, RuntimeError):  # finished meanwhile
                return
            except StorageInternalError:  # the database stayed locked past its timeout: beat again next interval
                continue

    def __enter__(self) -> HeartbeatThread:
        self.beat()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        self.thread.join()


def fail_stale_trials(study: optuna.Study, storage: optuna.storages.BaseStorage, heartbeat: Heartbeat) -> None:
    """FAIL the running trials whose worker stopped beating for longer than the grace period."""
    if keeps_optuna_heartbeats(storage):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        return
    now = time.time()
    study_id = storage.get_study_id_from_name(study.study_name)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        last = t.user_attrs.get(HEARTBEAT_ATTR)
        if last is not None and now - last > heartbeat.grace_s:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            try:
                storage.set_trial_state_values(trial_id, TrialState.FAIL)
            except UpdateFinishedTrialError:  # another worker failed it first
                pass


def worker_name() -> str:
    """host:pid of this process, as trials.csv's `worker` column shows it."""
    return f"{os.uname().nodename}:{os.getpid()}"


def is_lost(t: FrozenTrial) -> bool:
    """A FAIL trial without an error of its own: its worker died and a heartbeat check failed it."""
    return t.state == TrialState.FAIL and not t.user_attrs.get("error")
