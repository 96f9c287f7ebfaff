"""The local platform's initial load: a physical clone of the source made with pg_basebackup.

The clone plays the part of the restored snapshot in the target account: it is a separate server on
its own port whose log says ``redo done at X/Y`` (the captured LSN, read from ``LocalServer.logfile``
by the capture step). A marker file written after a complete copy tells a rerun whether the data
directory holds a finished clone (start it if stopped) or the remains of a failed copy (copy again).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import psycopg

from migration import sql as sqlfiles
from migration.credentials import temporary_passfile
from migration.localpg import (
    SERVER_USER,
    LocalPgError,
    LocalServer,
    _give_to_server_user,
    _write_as_server_user,
    find_bindir,
    server_user_cannot_reach,
)

log = logging.getLogger(__name__)

MARKER = "migration_clone_complete.json"
# What a data directory left by an interrupted pg_basebackup can contain; anything else is not ours to delete.
_COPY_ENTRIES = {"backup_label", "backup_manifest", "PG_VERSION", "base", "global", "pg_wal", "pg_xact",
                 "postgresql.auto.conf", "postgresql.conf", "pg_hba.conf", "pg_ident.conf"}


class LocalCloneError(RuntimeError):
    """The clone cannot be made or started; the message says what to do."""


def clone_logfile(datadir: str | Path) -> Path:
    """Where the clone's server log lives (it holds ``redo done at``)."""
    datadir = Path(datadir)
    return datadir.parent / f"{datadir.name}.log"


def _running_port(datadir: Path) -> int | None:
    # postmaster.pid's fourth line is the port the running server listens on.
    pid_file = datadir / "postmaster.pid"
    if not pid_file.exists():
        return None
    lines = pid_file.read_text(errors="replace").splitlines()
    return int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None


def _looks_like_partial_copy(datadir: Path) -> bool:
    entries = {p.name for p in datadir.iterdir()}
    return not entries or bool(entries & _COPY_ENTRIES)


def clone_local(source_conninfo: str, datadir: str | Path, port: int, bindir: str | Path | None = None, *,
                timeout: int = 1800) -> dict[str, Any]:
    """Copy the source with pg_basebackup into ``datadir`` and start it on ``port``; safe to rerun.

    ``source_conninfo`` must allow replication connections; its password, if any, reaches pg_basebackup
    through a temporary 0600 password file, not the command line. A finished clone is started if stopped
    and never copied again; a partial copy from a failed run is removed and copied again. Returns
    ``{host, port, datadir, logfile, copied, started}``.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise LocalCloneError(f"port: expected a TCP port from 1 to 65535, got {port!r}")
    if not isinstance(source_conninfo, str) or not source_conninfo.strip():
        raise LocalCloneError("source_conninfo: a libpq connection string to the source is required")
    datadir = Path(datadir).absolute()
    bindir = Path(bindir) if bindir else find_bindir()
    marker = datadir / MARKER
    server = LocalServer(datadir=datadir, port=port, bindir=bindir)
    copied = False

    if marker.exists():
        running = _running_port(datadir)
        if running is not None and server.is_running():
            log.info("Clone in %s is already running on port %s", datadir, running)
            return _result(server, running, copied=False, started=False)
        recorded = json.loads(marker.read_text()).get("port")
        if recorded != port:
            # The later setting in postgresql.auto.conf wins, so appending moves the clone to the new port.
            server._write_settings({"port": str(port)})
            _write_as_server_user(marker, json.dumps({"port": port}), append=False)
    else:
        if datadir.exists():
            if (datadir / "postmaster.pid").exists():
                raise LocalCloneError(
                    f"data_directory {datadir} holds a server that is running but is not a finished clone; "
                    "stop it (pg_ctl stop) or choose another data_directory")
            if not _looks_like_partial_copy(datadir):
                raise LocalCloneError(
                    f"data_directory {datadir} exists and does not look like a PostgreSQL copy; "
                    "choose another data_directory or remove it")
            log.warning("Removing the partial copy left in %s by an earlier run", datadir)
            shutil.rmtree(datadir)
        _hand_over_datadir(datadir)
        log.info("Copying the source into %s with pg_basebackup", datadir)
        # The password goes through a temporary password file: a command line is visible to `ps`.
        with temporary_passfile(source_conninfo) as conninfo:
            server = LocalServer.basebackup(conninfo, datadir, port, bindir, timeout=timeout)
        _write_as_server_user(marker, json.dumps({"port": port}), append=False)
        copied = True

    try:
        server.start()
    except LocalPgError as exc:
        raise LocalCloneError(f"the clone in {datadir} did not start: {exc}; see {server.logfile}") from exc
    log.info("Clone in %s started on port %s (log %s)", datadir, port, server.logfile)
    return _result(server, port, copied=copied, started=True)


def _hand_over_datadir(datadir: Path) -> None:
    """Create the empty data directory and the log file and give both to the server user.

    pg_basebackup and the server run as ``postgres`` when the task runs as root, so that user needs to
    write only these two, not their parent: a parent owned by root (the usual case when Airflow made it)
    is fine. It must still be able to pass through every folder above them, and the error says how.
    """
    # A log from an earlier copy would hold another "redo done at": the captured LSN must be this copy's.
    logfile = clone_logfile(datadir)
    logfile.unlink(missing_ok=True)
    parent = datadir.parent
    if not parent.exists():
        parent.mkdir(parents=True)
        parent.chmod(0o755)
        _give_to_server_user(parent)
    blocked = server_user_cannot_reach(parent)
    if blocked:
        raise LocalCloneError(
            f"data_directory: the {SERVER_USER!r} user, which runs the clone, cannot pass through {blocked}. Run "
            f"`chmod o+x {blocked}` (and on each folder above it that is not searchable), or choose a "
            "data_directory under a folder that user can reach, such as /var/lib/postgresql or /tmp")
    datadir.mkdir(mode=0o700)
    logfile.touch(mode=0o600)
    for path in (datadir, logfile):
        _give_to_server_user(path)


def _result(server: LocalServer, port: int, *, copied: bool, started: bool) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": port, "datadir": str(server.datadir), "logfile": str(server.logfile),
            "copied": copied, "started": started}


def clone_available(conninfo: str) -> tuple[bool, dict[str, Any]]:
    """(ready, facts): the clone accepts connections and has finished recovery."""
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            in_recovery, version = conn.execute(sqlfiles.load("local_clone_state")).fetchone()
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return False, {"accepting": False, "reason": reason}
    return not in_recovery, {"accepting": True, "in_recovery": in_recovery, "server_version": version}
