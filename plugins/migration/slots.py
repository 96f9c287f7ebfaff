"""Logical replication slots on the source, copied slots on the target, and the CDC start LSN.

Every function takes an autocommit psycopg 3 connection to the database the slot belongs to.
Slots are only ever read with ``pg_logical_slot_peek_*``: reading with ``get_changes`` would
consume changes that CDC still needs.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import psycopg
from psycopg.rows import dict_row

from migration import sql
from migration.capture import CAPTURE_METHODS, METHOD_REDO_DONE_AT
from migration.lsn import LSN

log = logging.getLogger(__name__)

PLUGINS = {"dms": "test_decoding", "native": "pgoutput"}
_SLOT_NAME_RE = re.compile(r"^[a-z0-9_]{1,63}$")
_POLL_S = 1.0
_MIN_CREATE_TIMEOUT_S = 5
INITIAL_WINDOW_BYTES = 64 * 1024


class SlotError(RuntimeError):
    """A slot cannot be created, reused, read or dropped; the message says what to do."""


class SlotPluginMismatchError(SlotError):
    """A slot with the wanted name exists but decodes with another output plugin."""


def plugin_for(engine: str) -> str:
    """Output plugin for a CDC engine: test_decoding for DMS, pgoutput for native logical replication."""
    try:
        return PLUGINS[engine]
    except KeyError:
        raise ValueError(f"engine: expected one of {', '.join(PLUGINS)}, got {engine!r}") from None


def validate_slot_name(slot_name: object, *, field: str = "slot_name") -> str:
    if not isinstance(slot_name, str) or not _SLOT_NAME_RE.match(slot_name):
        raise ValueError(f"{field}: a replication slot name is 1-63 characters of a-z, 0-9 and _, got {slot_name!r}")
    return slot_name


def _slot(conn: psycopg.Connection, slot_name: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql.load("slots_get"), {"slot_name": slot_name}).fetchone()


def _reuse(slot: dict[str, Any], plugin: str) -> dict[str, Any]:
    name = slot["slot_name"]
    if slot["slot_type"] != "logical":
        raise SlotError(f"Replication slot {name!r} exists but is a {slot['slot_type']} slot, not a logical one. "
                        f"Drop it with SELECT pg_drop_replication_slot('{name}'); if nothing uses it, or choose another slot name.")
    if slot["database"] != slot["current_database"]:
        raise SlotError(f"Replication slot {name!r} exists for database {slot['database']!r}, not for "
                        f"{slot['current_database']!r}. Slot names are per server: derive a distinct name per database.")
    if slot["plugin"] != plugin:
        raise SlotPluginMismatchError(
            f"Replication slot {name!r} exists with plugin {slot['plugin']!r}, but this migration needs {plugin!r}. "
            f"If nothing consumes it, drop it with SELECT pg_drop_replication_slot('{name}'); and rerun, "
            f"or set the CDC engine that matches {slot['plugin']!r}."
        )
    lsn = slot["confirmed_flush_lsn"] or slot["restart_lsn"]
    log.info("Replication slot %s already exists with plugin %s at %s; reusing it", name, plugin, lsn)
    return {"slot_name": name, "plugin": plugin, "lsn": str(LSN(lsn, field="confirmed_flush_lsn")), "created": False}


def _blocking_transactions(conn: psycopg.Connection, since: Any) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sql.load("slots_blocking_transactions"), {"since": since}).fetchall()


def _describe(blockers: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{b['who']} in database {b['database']!r} (user {b['owner']!r}, {b['state']}, open {b['age_s']} s)"
        for b in blockers
    )


def create_slot(conn: psycopg.Connection, slot_name: str, plugin: str, *, wait_for_xacts_s: float) -> dict[str, Any]:
    """Create the logical slot, or reuse it when it exists with the same plugin.

    Waits (at most ``wait_for_xacts_s``) until no transaction older than this attempt still holds an
    xid, because the slot's consistent point cannot come before they end.
    Returns ``{slot_name, plugin, lsn, created}``; ``lsn`` is the consistent point (or, when reused,
    the slot's confirmed flush LSN).
    """
    validate_slot_name(slot_name)
    if plugin not in PLUGINS.values():
        raise ValueError(f"plugin: expected one of {', '.join(PLUGINS.values())}, got {plugin!r}")
    if isinstance(wait_for_xacts_s, bool) or not isinstance(wait_for_xacts_s, int | float) or wait_for_xacts_s < 0:
        raise ValueError(f"wait_for_xacts_s: expected a number of seconds >= 0, got {wait_for_xacts_s!r}")

    existing = _slot(conn, slot_name)
    if existing:
        return _reuse(existing, plugin)

    deadline = time.monotonic() + wait_for_xacts_s
    since = conn.execute(sql.load("slots_clock")).fetchone()[0]
    while blockers := _blocking_transactions(conn, since):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise SlotError(
                f"Slot {slot_name!r} was not created: after {wait_for_xacts_s} s these transactions, older than the "
                f"attempt, are still open: {_describe(blockers)}. Commit or roll them back (or end them with "
                "pg_terminate_backend(pid); resolve prepared ones with COMMIT/ROLLBACK PREPARED), then rerun."
            )
        log.info("Waiting up to %.0f s more for older transactions before creating slot %s: %s",
                 remaining, slot_name, _describe(blockers))
        time.sleep(min(_POLL_S, remaining))

    timeout_s = max(deadline - time.monotonic(), _MIN_CREATE_TIMEOUT_S)
    try:
        # The local statement_timeout bounds the server's own wait for transactions that began meanwhile.
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql.load("slots_local_statement_timeout"), {"timeout_ms": str(int(timeout_s * 1000))})
            row = cur.execute(sql.load("slots_create"), {"slot_name": slot_name, "plugin": plugin}).fetchone()
    except psycopg.errors.DuplicateObject:
        existing = _slot(conn, slot_name)
        if existing is None:
            raise
        return _reuse(existing, plugin)
    except psycopg.errors.QueryCanceled as exc:
        now = conn.execute(sql.load("slots_clock")).fetchone()[0]
        still_open = _describe(_blocking_transactions(conn, now)) or "they have ended since"
        raise SlotError(
            f"Slot {slot_name!r} was not created: waiting for running transactions took longer than {timeout_s:.0f} s "
            f"({still_open}). Rerun in a quieter moment or raise wait_for_xacts_s."
        ) from exc
    log.info("Created replication slot %s with plugin %s, consistent at %s", row["slot_name"], plugin, row["lsn"])
    return {"slot_name": row["slot_name"], "plugin": plugin, "lsn": str(LSN(row["lsn"])), "created": True}


def drop_copied_slots(conn: psycopg.Connection, *, source_conn: psycopg.Connection | None = None) -> list[str]:
    """On the target: drop every inactive replication slot (a physical clone carries copies of the
    source's slots, which would only hold WAL there). Returns the dropped names; active slots are kept
    and logged. With ``source_conn`` it refuses to run when both connections reach the same server.
    """
    if source_conn is not None:
        target_started = conn.execute(sql.load("slots_server_identity")).fetchone()[0]
        source_started = source_conn.execute(sql.load("slots_server_identity")).fetchone()[0]
        if target_started == source_started:
            raise SlotError("The target connection reaches the source server itself (same postmaster start time): "
                            "refusing to drop its slots. Point the target connection/endpoint at the clone.")
    dropped = []
    with conn.cursor(row_factory=dict_row) as cur:
        slots = cur.execute(sql.load("slots_list")).fetchall()
    for slot in slots:
        name = slot["slot_name"]
        if slot["active"]:
            log.warning("Keeping replication slot %s on the target: it is in use by pid %s", name, slot["active_pid"])
            continue
        try:
            conn.execute(sql.load("slots_drop"), {"slot_name": name})
        except psycopg.errors.UndefinedObject:
            continue
        except psycopg.errors.ObjectInUse:
            log.warning("Keeping replication slot %s on the target: it became active while dropping", name)
            continue
        log.info("Dropped copied %s replication slot %s on the target", slot["slot_type"], name)
        dropped.append(name)
    return dropped


def drop_slot(conn: psycopg.Connection, slot_name: str) -> bool:
    """Drop the migration's slot on the source if it exists; True if it was dropped.

    Refuses a slot in use: a reader (a subscription or a DMS task) has to stop first.
    """
    validate_slot_name(slot_name)
    slot = _slot(conn, slot_name)
    if slot is None:
        return False
    if slot.get("active"):
        raise SlotError(f"replication slot {slot_name} is in use; stop its subscription or DMS task, then drop it")
    return conn.execute(sql.load("slots_drop_if_idle"), {"slot_name": slot_name}).rowcount == 1


def replication_lag_bytes(source_conn: psycopg.Connection, slot_name: str) -> int:
    """Bytes of WAL the slot's consumer has not confirmed yet: pg_current_wal_lsn() - confirmed_flush_lsn."""
    validate_slot_name(slot_name)
    row = source_conn.execute(sql.load("slots_lag_bytes"), {"slot_name": slot_name}).fetchone()
    if row is None:
        raise SlotError(f"Replication slot {slot_name!r} does not exist on the source; create it first.")
    return int(row[0])


# Each peeked row's lsn (checked on PostgreSQL 15): BEGIN = start of the transaction's first decoded record (pgoutput: of its first published change), a change = start of its own record, COMMIT = end of the commit record, so a COMMIT shares its lsn with the BEGIN that immediately follows.
def _peek(conn: psycopg.Connection, slot: dict[str, Any], *, upto: LSN, captured: LSN, publication: str | None,
          watch_xid: str | None = None) -> dict[str, Any]:
    name = "slots_peek_pgoutput" if slot["plugin"] == "pgoutput" else "slots_peek_test_decoding"
    params = {"slot_name": slot["slot_name"], "upto": str(upto), "captured": str(captured),
              "publication": publication, "watch_xid": watch_xid}
    try:
        with conn.cursor(row_factory=dict_row) as cur:
            return cur.execute(sql.load(name), params).fetchone()
    except psycopg.errors.ObjectInUse as exc:
        raise SlotError(f"Replication slot {slot['slot_name']!r} is in use ({exc.diag.message_primary}); the start LSN "
                        "must be resolved before CDC starts reading it. Stop the consumer, or keep the LSN resolved earlier.") from exc
    except psycopg.errors.UndefinedObject as exc:
        raise SlotError(f"Decoding slot {slot['slot_name']!r} failed: {exc.diag.message_primary}. pgoutput looks the "
                        "publication up as of each decoded change, so it must exist before the slot is created: "
                        "create the publication, then drop and recreate the slot before the clone.") from exc


def resolve_start_lsn(
    conn: psycopg.Connection,
    slot_name: str,
    captured: LSN | str,
    *,
    capture_method: str = METHOD_REDO_DONE_AT,
    publication: str | None = None,
    initial_window: int = INITIAL_WINDOW_BYTES,
) -> dict[str, Any]:
    """The LSN CDC starts from so that it carries exactly the transactions the clone lacks.

    The runbook's rule: the captured LSN when the slot holds a row at exactly it, else the first row
    LSN above it. The slot is peeked up to ``captured + window``, the window doubling from
    ``initial_window`` until a row above the captured LSN shows up or the window passes the flushed
    end of WAL, so the cost follows the distance to the captured LSN, not the slot's backlog.

    One case the plain rule gets wrong is handled: when the first row above the captured LSN is the
    COMMIT of a transaction that was still open at the captured LSN, starting there would skip that
    transaction, so the captured LSN itself is returned unless the clone already holds it.
    ``capture_method`` says what the captured LSN means: for ``redo_done_at`` the clone replayed the
    record that starts there; for the other methods it is the first position the clone lacks.

    Returns ``{start_lsn, exact, decoded_changes, reason}``; ``decoded_changes`` counts every row
    decoded across all peeks.
    """
    validate_slot_name(slot_name)
    captured = LSN.parse(captured, field="captured")
    if capture_method not in CAPTURE_METHODS:
        raise ValueError(f"capture_method: expected one of {', '.join(CAPTURE_METHODS)}, got {capture_method!r}")
    if isinstance(initial_window, bool) or not isinstance(initial_window, int) or initial_window <= 0:
        raise ValueError(f"initial_window: expected a positive number of bytes, got {initial_window!r}")
    slot = _slot(conn, slot_name)
    if slot is None:
        raise SlotError(f"Replication slot {slot_name!r} does not exist in this server; it must be created before the clone.")
    if slot["slot_type"] != "logical" or slot["database"] != slot["current_database"]:
        raise SlotError(f"Replication slot {slot_name!r} is not a logical slot of database {slot['current_database']!r} "
                        f"(type {slot['slot_type']}, database {slot['database']!r}); connect to the slot's database.")
    if slot["plugin"] not in PLUGINS.values():
        raise SlotError(f"Replication slot {slot_name!r} uses plugin {slot['plugin']!r}; only "
                        f"{', '.join(PLUGINS.values())} can be resolved.")
    if slot["plugin"] == "pgoutput" and not publication:
        raise ValueError("publication: a pgoutput slot can only be decoded for a publication; pass its name")
    confirmed = LSN(slot["confirmed_flush_lsn"], field="confirmed_flush_lsn")
    if captured < confirmed:
        raise SlotError(
            f"Replication slot {slot_name!r} starts at {confirmed}, after the captured LSN {captured}: the changes between "
            "are not in the slot (it was created after the clone point, or it was already read past it). "
            "Create the slot before the clone, then clone again."
        )

    decoded = 0
    window = initial_window
    while True:
        end = LSN(conn.execute(sql.load("slots_flush_lsn")).fetchone()[0], field="flush_lsn")
        if captured > end:
            raise SlotError(f"The captured LSN {captured} is ahead of this server's WAL (flushed up to {end}): it does "
                            "not come from a clone of this source. Check the clone and the source connection.")
        upto = LSN(min(int(captured) + window, 2**64 - 1))
        summary = _peek(conn, slot, upto=upto, captured=captured, publication=publication)
        decoded += summary["decoded"]
        log.info("Peeked slot %s up to %s: %s rows decoded", slot_name, upto, summary["decoded"])
        if summary["exact"]:
            return _result(captured, True, decoded, f"the slot holds a change at exactly {captured}")
        if summary["next_lsn"] is not None:
            break
        if upto >= end:
            return _result(captured, False, decoded,
                           f"the slot holds no change after {captured} yet (WAL flushed up to {end}); CDC starts at the captured LSN")
        window *= 2

    candidate = LSN(summary["next_lsn"])
    if not summary["next_is_commit"]:
        return _result(candidate, False, decoded, f"the first change after {captured} in the slot is at {candidate}")
    # The candidate is a COMMIT whose transaction began at or before the captured LSN.
    xid = summary["next_xid"]
    if capture_method == METHOD_REDO_DONE_AT:
        # Decoding up to captured+1 includes the record that starts at the captured LSN, which the clone replayed.
        replayed = _peek(conn, slot, upto=captured + 1, captured=captured, publication=publication, watch_xid=xid)
        decoded += replayed["decoded"]
        if replayed["watch_committed"]:
            return _result(candidate, False, decoded,
                           f"transaction {xid} commits at the captured LSN, so the clone holds it; the next change is at {candidate}")
    return _result(captured, False, decoded,
                   f"transaction {xid} was open at {captured} and commits at {candidate}, after it: starting at "
                   f"{candidate} would skip it, so CDC starts at the captured LSN")


def _result(start: LSN, exact: bool, decoded: int, reason: str) -> dict[str, Any]:
    log.info("CDC start LSN %s (exact=%s, %s rows decoded): %s", start, exact, decoded, reason)
    return {"start_lsn": str(start), "exact": exact, "decoded_changes": decoded, "reason": reason}
