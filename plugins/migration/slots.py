"""Logical replication slots on the source, copied slots on the target, and the CDC start LSN.

Every function takes an autocommit psycopg 3 connection to the database the slot belongs to.
Slots are only ever read with ``pg_logical_slot_peek_*``: reading with ``get_changes`` would
consume changes that CDC still needs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
from psycopg.rows import dict_row

from migration import sql as sqlfiles
from migration.capture import CAPTURE_METHODS, METHOD_REDO_DONE_AT
from migration.clone_guard import ensure_target_is_not_source
from migration.lsn import LSN
from migration.naming import validate_slot_name

log = logging.getLogger(__name__)

PLUGINS = {"dms": "test_decoding", "native": "pgoutput"}
_POLL_S = 1.0
MIN_CREATE_TIMEOUT_S = 5
# How far past the start resolve_start_lsn decodes, to prove the slot yields changes from there.
PROBE_BYTES = 64 * 1024


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


def _slot(conn: psycopg.Connection, slot_name: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(sqlfiles.load("slots_get"), {"slot_name": slot_name}).fetchone()


def _reuse(slot: dict[str, Any], plugin: str) -> dict[str, Any]:
    name = slot["slot_name"]
    if slot["slot_type"] != "logical":
        raise SlotError(f"Replication slot {name!r} exists but is a {slot['slot_type']} slot, not a logical one. "
                        f"Drop it with SELECT pg_drop_replication_slot('{name}'); if nothing uses it, or choose "
                        "another slot name.")
    if slot["database"] != slot["current_database"]:
        raise SlotError(f"Replication slot {name!r} exists for database {slot['database']!r}, not for "
                        f"{slot['current_database']!r}. Slot names are per server: derive a distinct name per "
                        "database.")
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
        return cur.execute(sqlfiles.load("slots_blocking_transactions"), {"since": since}).fetchall()


def _describe(blockers: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{b['who']} in database {b['database']!r} (user {b['owner']!r}, {b['state']}, open {b['age_s']} s)"
        for b in blockers
    )


def wait_for_older_transactions(conn: psycopg.Connection, slot_name: str, wait_for_xacts_s: float) -> float:
    """Wait (at most ``wait_for_xacts_s``) until no transaction older than this call holds an xid: a slot's
    consistent point cannot come before they end. Raises SlotError naming those still open then; returns
    how long the slot's creation may still wait for transactions begun meanwhile (at least a few seconds)."""
    deadline = time.monotonic() + wait_for_xacts_s
    since = conn.execute(sqlfiles.load("slots_clock")).fetchone()[0]
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
    return max(deadline - time.monotonic(), MIN_CREATE_TIMEOUT_S)


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

    timeout_s = wait_for_older_transactions(conn, slot_name, wait_for_xacts_s)
    try:
        # The local statement_timeout bounds the server's own wait for transactions that began meanwhile.
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sqlfiles.load("slots_local_statement_timeout"), {"timeout_ms": str(int(timeout_s * 1000))})
            row = cur.execute(sqlfiles.load("slots_create"), {"slot_name": slot_name, "plugin": plugin}).fetchone()
    except psycopg.errors.DuplicateObject:
        existing = _slot(conn, slot_name)
        if existing is None:
            raise
        return _reuse(existing, plugin)
    except psycopg.errors.QueryCanceled as exc:
        now = conn.execute(sqlfiles.load("slots_clock")).fetchone()[0]
        still_open = _describe(_blocking_transactions(conn, now)) or "they have ended since"
        raise SlotError(
            f"Slot {slot_name!r} was not created: waiting for running transactions took longer than {timeout_s:.0f} s "
            f"({still_open}). Rerun in a quieter moment or raise wait_for_xacts_s."
        ) from exc
    log.info("Created replication slot %s with plugin %s, consistent at %s", row["slot_name"], plugin, row["lsn"])
    return {"slot_name": row["slot_name"], "plugin": plugin, "lsn": str(LSN(row["lsn"])), "created": True}


def drop_copied_slots(conn: psycopg.Connection, *, source_conn: psycopg.Connection) -> list[str]:
    """On the target: drop every inactive replication slot (a physical clone carries copies of the
    source's slots, which would only hold WAL there). Returns the dropped names; active slots are kept
    and logged. First proves that ``conn`` does not reach the source (``source_conn``): on the source
    this would drop other consumers' slots.
    """
    ensure_target_is_not_source(conn, source_conn, task="drop_copied_slots")
    dropped = []
    with conn.cursor(row_factory=dict_row) as cur:
        slots = cur.execute(sqlfiles.load("slots_list")).fetchall()
    for slot in slots:
        name = slot["slot_name"]
        if slot["active"]:
            log.warning("Keeping replication slot %s on the target: it is in use by pid %s", name, slot["active_pid"])
            continue
        try:
            conn.execute(sqlfiles.load("slots_drop"), {"slot_name": name})
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
    return conn.execute(sqlfiles.load("slots_drop_if_idle"), {"slot_name": slot_name}).rowcount == 1


def slot_retention(source_conn: psycopg.Connection, slot_name: str) -> dict[str, Any]:
    """{retained_bytes, wal_status, safe_wal_size, max_slot_wal_keep_size} of a slot on the source."""
    validate_slot_name(slot_name)
    with source_conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(sqlfiles.load("slots_retention"), {"slot_name": slot_name}).fetchone()
    if row is None:
        raise SlotError(f"Replication slot {slot_name!r} does not exist on the source; create it first.")
    return dict(row)


def replication_lag_bytes(source_conn: psycopg.Connection, slot_name: str) -> int:
    """Bytes of WAL the slot's consumer has not confirmed yet: pg_current_wal_lsn() - confirmed_flush_lsn."""
    validate_slot_name(slot_name)
    row = source_conn.execute(sqlfiles.load("slots_lag_bytes"), {"slot_name": slot_name}).fetchone()
    if row is None:
        raise SlotError(f"Replication slot {slot_name!r} does not exist on the source; create it first.")
    return int(row[0])


def start_position_for(captured: LSN | str, capture_method: str) -> LSN:
    """The LSN CDC starts decoding at, for a clone captured at ``captured`` with ``capture_method``.

    Logical decoding replays exactly the transactions whose commit record starts at or after the
    start position (PostgreSQL skips a commit when ``commit_start < start``), whether the start is a
    subscription's origin or START_REPLICATION's LSN, as DMS sends its CdcStartPosition.

    - ``redo_done_at``: the clone replayed the record that starts at X, so a commit starting at X is in
      the clone and every commit starting after X is not: start at X + 1, the native path's rule
      (``native_cdc.origin_position_for``).
    - ``aurora_volume_logical_start_lsn`` and ``slot_consistent_point``: X is the first position the
      clone lacks: start at X, as given.
    """
    captured = LSN.parse(captured, field="captured")
    if capture_method not in CAPTURE_METHODS:
        raise ValueError(f"capture_method: expected one of {', '.join(CAPTURE_METHODS)}, got {capture_method!r}")
    return captured + 1 if capture_method == METHOD_REDO_DONE_AT else captured


def _decode_upto(conn: psycopg.Connection, slot: dict[str, Any], upto: LSN, publication: str | None) -> int:
    """Peek (never consume) the slot up to ``upto``; returns the rows decoded."""
    name = "slots_peek_pgoutput" if slot["plugin"] == "pgoutput" else "slots_peek_test_decoding"
    try:
        return int(conn.execute(sqlfiles.load(name), {"slot_name": slot["slot_name"], "upto": str(upto),
                                                      "publication": publication}).fetchone()[0])
    except psycopg.errors.ObjectInUse as exc:
        raise SlotError(f"Replication slot {slot['slot_name']!r} is in use ({exc.diag.message_primary}); the start LSN "
                        "must be resolved before CDC starts reading it. Stop the consumer, or keep the LSN resolved "
                        "earlier.") from exc
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
) -> dict[str, Any]:
    """The LSN CDC starts from so that it carries exactly the transactions the clone lacks.

    The start follows from the captured LSN and what it means (``start_position_for``): CDC replays
    the transactions whose commit record starts after a ``redo done at`` LSN, or at or after a
    first-missing position (Aurora's function, a slot's consistent point). The slot is checked
    against it: it must still hold the changes from there (not read past it), and the captured LSN
    must be within this server's WAL. The slot is decoded (peeked, never consumed) up to
    ``PROBE_BYTES`` past the start, which proves it can be decoded there (a pgoutput slot created
    before its publication cannot); the cost follows the distance from the slot's restart point to
    the clone point, never the backlog after it.

    Returns ``{start_lsn, captured_lsn, capture_method, decoded_changes, reason}``.
    """
    validate_slot_name(slot_name)
    captured = LSN.parse(captured, field="captured")
    start = start_position_for(captured, capture_method)
    slot = _slot(conn, slot_name)
    if slot is None:
        raise SlotError(f"Replication slot {slot_name!r} does not exist in this server; it must be created before the "
                        "clone.")
    if slot["slot_type"] != "logical" or slot["database"] != slot["current_database"]:
        raise SlotError(f"Replication slot {slot_name!r} is not a logical slot of database "
                        f"{slot['current_database']!r} "
                        f"(type {slot['slot_type']}, database {slot['database']!r}); connect to the slot's database.")
    if slot["plugin"] not in PLUGINS.values():
        raise SlotError(f"Replication slot {slot_name!r} uses plugin {slot['plugin']!r}; only "
                        f"{', '.join(PLUGINS.values())} can be resolved.")
    if slot["plugin"] == "pgoutput" and not publication:
        raise ValueError("publication: a pgoutput slot can only be decoded for a publication; pass its name")
    confirmed = LSN(slot["confirmed_flush_lsn"], field="confirmed_flush_lsn")
    if start < confirmed:
        raise SlotError(
            f"Replication slot {slot_name!r} starts at {confirmed}, after CDC's start {start} (captured LSN "
            f"{captured}): "
            "the changes between are not in the slot (it was created after the clone point, or it was already read "
            "past it). Create the slot before the clone, then clone again."
        )
    end = LSN(conn.execute(sqlfiles.load("slots_flush_lsn")).fetchone()[0], field="flush_lsn")
    if captured > end:
        raise SlotError(f"The captured LSN {captured} is ahead of this server's WAL (flushed up to {end}): it does "
                        "not come from a clone of this source. Check the clone and the source connection.")
    decoded = _decode_upto(conn, slot, max(start, min(start + PROBE_BYTES, end)), publication)
    if capture_method == METHOD_REDO_DONE_AT:
        reason = (f"the clone replayed the WAL record at {captured} (redo done at): a transaction whose commit record "
                  f"starts there is in the clone, every later one is not, so CDC starts at {start}")
    else:
        reason = f"{captured} is the first position the clone lacks ({capture_method}), so CDC starts there"
    log.info("CDC start LSN %s for slot %s (%s rows decoded): %s", start, slot_name, decoded, reason)
    return {"start_lsn": str(start), "captured_lsn": str(captured), "capture_method": capture_method,
            "decoded_changes": decoded, "reason": reason}
