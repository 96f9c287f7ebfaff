"""The LSN at which the clone (or restored snapshot, or dump) is consistent with the source.

Three ways, tried in this order unless one is named:

1. ``aurora_volume_logical_start_lsn()`` on an Aurora clone (only if the function exists there);
2. the ``redo done at X/Y`` line in the clone's server log, read through a log reader: any
   callable returning the whole log text (``LocalLogReader`` for a local file; an RDS reader that
   downloads the instance log fits the same shape);
3. the slot's consistent point, for loads made with pg_dump at the slot's exported snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from migration import sql as sqlfiles
from migration.lsn import LSN, find_redo_done

log = logging.getLogger(__name__)

METHOD_AURORA = "aurora_volume_logical_start_lsn"
METHOD_REDO_DONE_AT = "redo_done_at"
METHOD_SLOT = "slot_consistent_point"
CAPTURE_METHODS = (METHOD_AURORA, METHOD_REDO_DONE_AT, METHOD_SLOT)

LogReader = Callable[[], str]



class CaptureError(RuntimeError):
    """No capture method applies, or the one that applies gave no LSN; the message says what to do."""


class LocalLogReader:
    """Reads a server log file on this machine (the ``pg_basebackup`` platform's clone log)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __call__(self) -> str:
        try:
            return self.path.read_text(errors="replace")
        except OSError as exc:
            raise CaptureError(f"log_path: cannot read the clone's server log {self.path}: {exc.strerror}") from exc

    def __repr__(self) -> str:
        return f"LocalLogReader({str(self.path)!r})"


def _aurora_function(conn: psycopg.Connection) -> tuple[str, str] | None:
    row = conn.execute(sqlfiles.load("capture_find_aurora_function")).fetchone()
    return (row[0], row[1]) if row else None


def _from_aurora(conn: psycopg.Connection, where: tuple[str, str]) -> LSN:
    value = conn.execute(sqlfiles.compose("capture_call_function", schema=where[0], function=where[1])).fetchone()[0]
    return LSN.parse(value, field=f"{where[0]}.{where[1]}()")


def _from_slot(slot_name: str | None, source_conn: psycopg.Connection | None,
               consistent_point: str | None) -> LSN | None:
    if consistent_point:
        return LSN.parse(consistent_point, field="consistent_point")
    if not slot_name or source_conn is None:
        return None
    with source_conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(sqlfiles.load("slots_get"), {"slot_name": slot_name}).fetchone()
    if row is None:
        raise CaptureError(f"slot_name: replication slot {slot_name!r} does not exist on the source, so it has no "
                           "consistent point; create the slot before the load.")
    if row["slot_type"] != "logical" or row["confirmed_flush_lsn"] is None:
        raise CaptureError(f"slot_name: replication slot {slot_name!r} is not a logical slot; it has no consistent "
                           "point.")
    return LSN(row["confirmed_flush_lsn"], field="confirmed_flush_lsn")


def capture_clone_lsn(
    conn: psycopg.Connection | None,
    *,
    log_reader: LogReader | None,
    slot_name: str | None,
    source_conn: psycopg.Connection | None = None,
    method: str | None = None,
    consistent_point: str | None = None,
) -> dict[str, str]:
    """Return ``{lsn, method}`` for the clone reached by ``conn``.

    With ``method=None`` the first method that applies wins (Aurora function on ``conn``, then the
    log, then the slot). Name the method for pg_dump loads (``slot_consistent_point``), since the
    target of a dump may itself be an Aurora cluster. For the slot method, pass the consistent point
    returned when the slot was created (``consistent_point``), or ``slot_name`` and ``source_conn``
    to read the slot's confirmed flush LSN, which equals it until CDC reads the slot.
    """
    if method is not None and method not in CAPTURE_METHODS:
        raise ValueError(f"method: expected one of {', '.join(CAPTURE_METHODS)} or None, got {method!r}")
    if log_reader is not None and not callable(log_reader):
        raise ValueError(f"log_reader: expected a callable returning the log text, got {log_reader!r}")
    tried: list[str] = []

    if method in (None, METHOD_AURORA):
        if conn is None:
            raise ValueError("conn: a connection to the clone is needed to look for aurora_volume_logical_start_lsn()")
        where = _aurora_function(conn)
        if where:
            return _found(_from_aurora(conn, where), METHOD_AURORA)
        tried.append("aurora_volume_logical_start_lsn() does not exist on the clone")

    if method in (None, METHOD_REDO_DONE_AT):
        if log_reader is None:
            tried.append("no log reader was given for the clone's server log")
        else:
            lsn = find_redo_done(log_reader())
            if lsn is not None:
                return _found(lsn, METHOD_REDO_DONE_AT)
            tried.append(f"the clone's log ({log_reader!r}) has no 'redo done at' line")

    if method in (None, METHOD_SLOT):
        lsn = _from_slot(slot_name, source_conn, consistent_point)
        if lsn is not None:
            return _found(lsn, METHOD_SLOT)
        tried.append("no consistent point, or slot name and source connection, was given")

    raise CaptureError(
        "Cannot capture the clone's LSN: " + "; ".join(tried) + ". Fix: on Aurora use a minor version that has "
        "aurora_volume_logical_start_lsn(); for a restored snapshot or a pg_basebackup clone give the reader of its "
        "server log (it must include the first start after restore); for a pg_dump load give the slot's consistent "
        "point."
    )


def _found(lsn: LSN, method: str) -> dict[str, Any]:
    log.info("Captured the clone's LSN %s with %s", lsn, method)
    return {"lsn": str(lsn), "method": method}
