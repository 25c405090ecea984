"""Where a study's trials are shared: Optuna storages and the lock that creates one."""

from __future__ import annotations

import logging
import os

from tfigkd.errors import UserError
from tfigkd.lock import folder_lock

log = logging.getLogger(__name__)


def sqlite_lock(url):
    """A lock beside a local SQLite storage file (a no-op for other storages)."""
    import contextlib

    prefix = "sqlite:///"
    folder = os.path.dirname(url[len(prefix):]) if url.startswith(prefix) else ""
    if not folder or not os.path.isdir(folder):
        return contextlib.nullcontext()
    return folder_lock(folder, ".tfigkd-tune-storage.lock", wait=True)


def open_storage(url, t):
    """The Optuna storage at ``url``, with heartbeats and retries of trials left by dead workers."""
    import warnings

    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    try:
        if url.startswith("journal:"):
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            path = url[len("journal:"):]
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise OSError(f"folder {folder} does not exist")
            log.warning("Journal storage has no heartbeats: a trial left RUNNING by a killed "
                        "worker is not retried (use a sqlite:/// or other RDB URL for that).")
            return JournalStorage(JournalFileBackend(path))
        engine = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, engine_kwargs=engine, heartbeat_interval=t.heartbeat_s,
                              grace_period=t.grace_s, heartbeat_stale_trial_callback=(
                                  RetryHeartbeatStaleTrialCallback(max_retry=3)))
    except (Exception, optuna.exceptions.OptunaError) as e:  # sqlalchemy, drivers, OS
        reason = " ".join(str(e).split("\n")[0].split())[:200]
        raise UserError(f"--storage {url!r} cannot be opened ({type(e).__name__}: {reason}); "
                        "give an Optuna storage URL such as sqlite:///runs/tune/study.db, "
                        "journal:runs/tune/journal.log or postgresql://user@host/db.") from None
