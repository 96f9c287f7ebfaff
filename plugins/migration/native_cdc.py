"""Native CDC: PostgreSQL logical replication from the source's slot into the cloned target.

The source gets a publication; the target gets a subscription that uses the slot created before the
clone (no new slot, no initial copy), whose replication origin is moved to just after the clone's
captured LSN before it is enabled. Works between any two reachable servers, Aurora and RDS included:
only SQL is used, no file access.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from migration import sql as sqlfiles
from migration.config import check_names
from migration.credentials import remove_subscription_passfile, subscription_conninfo
from migration.lsn import LSN

log = logging.getLogger(__name__)

# FOR TABLES IN SCHEMA exists from PostgreSQL 15 on; older servers get an explicit table list.
SCHEMA_PUBLICATIONS_FROM = 150000


class NativeCdcError(RuntimeError):
    """A publication or subscription cannot be created or used as asked; the message says why."""


def _name(value: Any, field: str) -> str:
    return check_names([value], "native CDC", field)[0]


def _names(values: Any, field: str) -> list[str]:
    return check_names(values if isinstance(values, str | list) or values is None else list(values), "native CDC",
                       field)


def statement_rows(conn: psycopg.Connection, sql_file: str, **params: Any) -> list[tuple]:
    """Rows of the statement in ``include/sql/<sql_file>.sql``, run with ``params`` as bind parameters."""
    return conn.execute(sqlfiles.load(sql_file), params).fetchall()


def origin_position_for(captured: LSN) -> LSN:
    """Replication origin position that resumes decoding exactly after a clone's captured LSN.

    ``captured`` is the clone's ``redo done at X``: the *start* of the last WAL record the clone
    replayed. A transaction whose commit record starts exactly at X is therefore already in the
    clone; every commit record starting after X is not.

    PostgreSQL's logical decoding skips a transaction when the start LSN of its commit record is
    below the point decoding starts at (``SnapBuildXactNeedsSkip(builder, commit_start)`` is
    ``commit_start < start_decoding_at``), and a subscription starts decoding at its origin's
    position (or at the slot's confirmed position, when that is later). With the origin at X + 1 the commit starting at
    X is skipped (X < X + 1) and the first
    commit after it, which starts at X + (size of the record at X) >= X + 1, is applied. X itself
    would apply the commit at X a second time. The integration tests check both on real servers.
    """
    return LSN.parse(captured, field="captured_lsn") + 1


# ---------------------------------------------------------------- publication (source side)

def _ensure_identity(conn: psycopg.Connection, schemas: list[str]) -> None:
    rows = conn.execute(sqlfiles.load("native_cdc_tables_without_identity"), {"schemas": schemas}).fetchall()
    if rows:
        names = ", ".join(str(sql.Identifier(s, t).as_string(conn)) for s, t, _ in rows)
        raise NativeCdcError(
            f"tables without a replica identity: {names}. Once published, UPDATE and DELETE on them would fail "
            "on the source. Add a primary key or run ALTER TABLE ... REPLICA IDENTITY FULL first; nothing was created."
        )


def create_publication(source_conn: psycopg.Connection, name: str, schemas: Sequence[str], *,
                       by_table: bool | None = None) -> dict[str, Any]:
    """Publish every table of ``schemas`` under ``name``; rerunning adds what is missing.

    On PostgreSQL 15 and later the publication covers whole schemas (FOR TABLES IN SCHEMA), so tables
    created later are included; older servers get an explicit table list (FOR TABLE), which a rerun
    extends with tables created since. ``by_table`` forces one form (None: by server version).
    Refuses, creating nothing, when a table has no replica identity (its updates would start failing).
    """
    name = _name(name, "publication")
    schemas = _names(schemas, "schemas")
    missing = [r[0] for r in statement_rows(source_conn, "native_cdc_missing_schemas", schemas=schemas)]
    if missing:
        raise NativeCdcError(f"schemas: {missing} do not exist in database {source_conn.info.dbname!r}")
    _ensure_identity(source_conn, schemas)
    if by_table is None:
        by_table = source_conn.info.server_version < SCHEMA_PUBLICATIONS_FROM
    existing = source_conn.execute(sqlfiles.load("native_cdc_publication"), {"name": name}).fetchone()
    if existing and existing[1]:
        log.info("Publication %s already publishes all tables", name)
        return {"publication": name, "mode": "all_tables", "created": False, "added": []}

    if not by_table:
        have = set() if not existing else {r[0] for r in statement_rows(source_conn, "native_cdc_publication_schemas",
                                                                        name=name)}
        todo = [s for s in schemas if s not in have]
        schema_list = sql.SQL(", ").join(sql.Identifier(s) for s in todo)
        if not existing:
            source_conn.execute(sqlfiles.compose("native_cdc_create_publication_schemas", publication=name,
                                                 schemas=schema_list))
        elif todo:
            source_conn.execute(sqlfiles.compose("native_cdc_add_publication_schemas", publication=name,
                                                 schemas=schema_list))
        log.info("Publication %s: %s schemas %s", name, "created with" if not existing else "added", todo)
        return {"publication": name, "mode": "schemas", "created": not existing, "added": todo}

    wanted = [tuple(r) for r in statement_rows(source_conn, "native_cdc_schema_tables", schemas=schemas)]
    have_tables = set() if not existing else {
        tuple(r) for r in statement_rows(source_conn, "native_cdc_publication_tables", name=name)}
    todo_tables = [t for t in wanted if t not in have_tables]
    table_list = sql.SQL(", ").join(sql.Identifier(s, t) for s, t in todo_tables)
    if not existing:
        if todo_tables:
            source_conn.execute(sqlfiles.compose("native_cdc_create_publication_tables", publication=name,
                                                 tables=table_list))
        else:
            source_conn.execute(sqlfiles.compose("native_cdc_create_publication_empty", publication=name))
    elif todo_tables:
        source_conn.execute(sqlfiles.compose("native_cdc_add_publication_tables", publication=name, tables=table_list))
    added = [sql.Identifier(s, t).as_string(source_conn) for s, t in todo_tables]
    log.info("Publication %s (per table): %s %d tables", name, "created with" if not existing else "added", len(added))
    return {"publication": name, "mode": "tables", "created": not existing, "added": added}


def drop_publication(source_conn: psycopg.Connection, name: str) -> bool:
    """Drop the publication if it exists; returns whether it did."""
    name = _name(name, "publication")
    existed = source_conn.execute(sqlfiles.load("native_cdc_publication"), {"name": name}).fetchone() is not None
    source_conn.execute(sqlfiles.compose("native_cdc_drop_publication", publication=name))
    return existed


# ---------------------------------------------------------------- subscription (target side)

def subscription_state(target_conn: psycopg.Connection, name: str) -> dict[str, Any] | None:
    """The subscription's oid, enabled flag, slot, publications, origin name and progress; None if absent."""
    with target_conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(sqlfiles.load("native_cdc_subscription"), {"name": name}).fetchone()
    return dict(row) if row else None


def create_subscription(target_conn: psycopg.Connection, name: str, source_conninfo: str, publication: str,
                        slot_name: str, *, passfile_directory: str | None = None) -> dict[str, Any]:
    """Create a disabled subscription on ``slot_name`` that neither creates a slot nor copies data.

    Rerunning finds the existing subscription and leaves it as it is; one that uses another slot or
    publication is an error (drop it with drop_subscription first).

    The connection string never appears in a statement's text or bind parameters (it is loaded by
    COPY and the statement is built in the server), so a server logging statements does not log the
    password. With ``passfile_directory`` (a folder the target server reads: the local platform's
    data directory) the password goes into a 0600 password file there and pg_subscription stores
    only its path; without it pg_subscription stores the password (readable by superusers only) until
    the subscription is dropped.
    """
    name = _name(name, "subscription")
    publication = _name(publication, "publication")
    slot_name = _name(slot_name, "slot_name")
    if not isinstance(source_conninfo, str) or not source_conninfo.strip():
        raise NativeCdcError("source_conninfo: a libpq connection string to the source database is required")
    try:
        psycopg.conninfo.conninfo_to_dict(source_conninfo)
    except psycopg.ProgrammingError as exc:
        raise NativeCdcError(f"source_conninfo: not a valid libpq connection string ({exc})") from None
    state = subscription_state(target_conn, name)
    if state:
        if state["slot_name"] != slot_name or list(state["publications"]) != [publication]:
            raise NativeCdcError(
                f"subscription {name} already exists with slot {state['slot_name']!r} and publications "
                f"{list(state['publications'])}, not slot {slot_name!r} and publication {publication!r}. "
                "Drop it with drop_subscription (DropSubscription) and run again."
            )
        log.info("Subscription %s already exists (enabled=%s)", name, state["enabled"])
        return {"subscription": name, "created": False, "enabled": state["enabled"]}
    conninfo = subscription_conninfo(source_conninfo, name, passfile_directory)
    try:
        with target_conn.transaction():
            target_conn.execute(sqlfiles.load("native_cdc_subscription_args_table"))
            with target_conn.cursor().copy(sqlfiles.load("native_cdc_subscription_args_copy")) as copy:
                copy.write_row((name, publication, slot_name, conninfo))
            target_conn.execute(sqlfiles.load("native_cdc_create_subscription"))
    except BaseException:
        if conninfo != source_conninfo:
            remove_subscription_passfile(conninfo)
        raise
    log.info("Subscription %s created on slot %s, disabled%s", name, slot_name,
             " (password in a password file of the target server)" if conninfo != source_conninfo else "")
    return {"subscription": name, "created": True, "enabled": False}


def _wait_worker_gone(target_conn: psycopg.Connection, name: str, timeout_s: float = 30.0) -> dict[str, Any]:
    # A just-disabled subscription's worker exits asynchronously and holds the origin until it does.
    deadline = time.monotonic() + timeout_s
    while True:
        state = subscription_state(target_conn, name)
        if state is None or state["worker_pid"] is None:
            return state
        if time.monotonic() > deadline:
            raise NativeCdcError(f"subscription {name}: its apply worker (pid {state['worker_pid']}) did not exit "
                                 f"within {timeout_s:.0f} s of being disabled")
        time.sleep(0.1)


def advance_origin(target_conn: psycopg.Connection, subscription: str, captured_lsn: LSN | str | None = None, *,
                   origin_lsn: LSN | str | None = None, enable: bool = True) -> LSN:
    """Move the subscription's replication origin to where apply must resume, then enable it.

    Give exactly one of ``captured_lsn`` (a clone's ``redo done at``: the origin goes to
    ``origin_position_for(captured_lsn)``) or ``origin_lsn`` (a position that is already the first
    one to decode, such as a slot's consistent point or Aurora's aurora_volume_logical_start_lsn();
    used as it is). Returns that origin position. Never moves an origin backwards and leaves an
    enabled subscription's origin alone, so a rerun cannot apply a transaction twice.
    """
    subscription = _name(subscription, "subscription")
    if (captured_lsn is None) == (origin_lsn is None):
        raise NativeCdcError("advance_origin: give exactly one of captured_lsn (redo done at) and origin_lsn")
    if captured_lsn is not None:
        target = origin_position_for(LSN.parse(captured_lsn, field="captured_lsn"))
    else:
        target = LSN.parse(origin_lsn, field="origin_lsn")
    state = subscription_state(target_conn, subscription)
    if state is None:
        raise NativeCdcError(f"subscription {subscription} does not exist; create it with create_subscription first")
    if state["enabled"]:
        log.info("Subscription %s is already enabled (origin at %s); origin left as it is", subscription,
                 state["origin_lsn"])
        return target
    state = _wait_worker_gone(target_conn, subscription)
    current = LSN(state["origin_lsn"]) if state["origin_lsn"] else None
    if current is not None and current >= target:
        log.info("Origin %s is already at %s (>= %s); not moved back", state["origin"], current, target)
    else:
        target_conn.execute(sqlfiles.load("native_cdc_origin_advance"), {"origin": state["origin"], "lsn": str(target)})
        log.info("Origin %s of subscription %s advanced to %s", state["origin"], subscription, target)
    if enable:
        target_conn.execute(sqlfiles.compose("native_cdc_enable_subscription", subscription=subscription))
        log.info("Subscription %s enabled", subscription)
    return target


def enable_subscription(target_conn: psycopg.Connection, name: str) -> bool:
    """Enable a subscription again (apply resumes from its origin); False if it does not exist."""
    name = _name(name, "subscription")
    if subscription_state(target_conn, name) is None:
        return False
    target_conn.execute(sqlfiles.compose("native_cdc_enable_subscription", subscription=name))
    return True


def drop_subscription(target_conn: psycopg.Connection, name: str, *, drop_slot: bool = False) -> bool:
    """Disable and drop a subscription; the source's slot stays unless ``drop_slot``. False if absent."""
    name = _name(name, "subscription")
    state = subscription_state(target_conn, name)
    if state is None:
        return False
    if state["enabled"]:
        target_conn.execute(sqlfiles.compose("native_cdc_disable_subscription", subscription=name))
    if not drop_slot and state["slot_name"] is not None:
        target_conn.execute(sqlfiles.compose("native_cdc_detach_slot", subscription=name))
    stored = _stored_conninfo(target_conn, name)
    target_conn.execute(sqlfiles.compose("native_cdc_drop_subscription", subscription=name))
    # The stored credential goes with the subscription: a password file this package wrote is removed.
    removed = remove_subscription_passfile(stored)
    log.info("Subscription %s dropped (source slot %s)%s", name, "dropped" if drop_slot else "kept",
             f"; its password file {removed} removed" if removed else "")
    return True


def _stored_conninfo(target_conn: psycopg.Connection, name: str) -> str | None:
    # subconninfo is readable by superusers only; without it there is no password file of ours to find.
    try:
        with target_conn.transaction():
            row = target_conn.execute(sqlfiles.load("native_cdc_subscription_conninfo"), {"name": name}).fetchone()
    except psycopg.errors.InsufficientPrivilege:
        return None
    return row[0] if row else None


# ---------------------------------------------------------------- lag

def slot_positions(source_conn: psycopg.Connection, slot_names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per slot: active, confirmed_flush_lsn, current_lsn and lag_bytes (source WAL minus confirmed)."""
    with source_conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(sqlfiles.load("native_cdc_slot_lag"), {"slots": list(slot_names)}).fetchall()
    return {row["slot_name"]: dict(row) for row in rows}


def measure_lag(source_conn: psycopg.Connection, target_conn: psycopg.Connection, slot_name: str,
                subscription: str) -> dict[str, Any]:
    """Bytes the subscriber has not confirmed yet, and seconds since its apply worker last heard from the source."""
    slot = slot_positions(source_conn, [slot_name]).get(slot_name)
    if slot is None:
        raise NativeCdcError(f"slot {slot_name} does not exist on the source; CDC cannot catch up without it")
    with target_conn.cursor(row_factory=dict_row) as cur:
        apply = cur.execute(sqlfiles.load("native_cdc_apply_state"), {"name": subscription}).fetchone()
    errors = None
    if apply is not None and target_conn.info.server_version >= 150000:
        row = target_conn.execute(sqlfiles.load("native_cdc_apply_errors"), {"name": subscription}).fetchone()
        errors = int(row[0]) if row else 0
    return lag_payload(slot, apply, slot_name=slot_name, subscription=subscription, apply_errors=errors)


def lag_payload(slot: Mapping[str, Any] | None, apply: Mapping[str, Any] | None, *, slot_name: str,
                subscription: str, apply_errors: int | None) -> dict[str, Any]:
    """The lag check's payload from the slot's row (``native_cdc_slot_lag``) and the subscription's
    (``native_cdc_apply_state``); the plain check and the triggerer's batched one both build it here."""
    if slot is None:
        raise NativeCdcError(f"slot {slot_name} does not exist on the source; CDC cannot catch up without it")
    if apply is None:
        raise NativeCdcError(f"subscription {subscription} does not exist on the target")
    age = apply["apply_age_s"]
    return {
        "lag_bytes": int(slot["lag_bytes"]) if slot["lag_bytes"] is not None else None,
        "apply_age_s": round(float(age), 3) if age is not None else None,
        "confirmed_flush_lsn": slot["confirmed_flush_lsn"],
        "current_lsn": slot["current_lsn"],
        "slot_active": bool(slot["active"]),
        "subscription_enabled": bool(apply["enabled"]),
        "worker_running": apply["worker_pid"] is not None,
        "apply_error_count": apply_errors,
    }


def apply_problem(lag: dict[str, Any], subscription: str) -> str | None:
    """Words for an apply worker that keeps failing (PostgreSQL 15+ counts its errors); None when it does not.

    The error text itself is only in the target server's log, which SQL cannot read on every platform.
    """
    errors = lag.get("apply_error_count")
    if not errors:
        return None
    state = "" if lag.get("worker_running") else ", no apply worker running now"
    return (f"subscription {subscription}: the apply worker keeps failing (apply_error_count {errors}{state}) and "
            "CDC is not caught up: check the target server's log for the error; likely schema drift (DDL on the "
            "source after the clone point that the target does not have)")


def lag_ready(lag: dict[str, Any], max_lag_bytes: int, max_apply_age_s: float) -> bool:
    """Caught up: lag under ``max_lag_bytes`` and the apply worker heard from the source recently."""
    return (lag["worker_running"] and lag["lag_bytes"] is not None and lag["lag_bytes"] <= max_lag_bytes
            and lag["apply_age_s"] is not None and lag["apply_age_s"] <= max_apply_age_s)


def record_lag_sample(target_conn: psycopg.Connection, control_schema: str, database: str,
                      lag: dict[str, Any]) -> None:
    """Keep one lag measurement in ``<control_schema>.cdc_lag_samples`` on the target (for the report)."""
    control_schema = _name(control_schema, "control_schema")
    target_conn.execute(sqlfiles.compose("native_cdc_lag_samples_table", schema=control_schema))
    target_conn.execute(sqlfiles.compose("native_cdc_lag_sample_write", schema=control_schema),
                        {"database": database, "lag_bytes": lag.get("lag_bytes"),
                         "apply_age_s": lag.get("apply_age_s")})


def read_lag_samples(target_conn: psycopg.Connection, control_schema: str, database: str) -> list[dict[str, Any]]:
    """``[{database, sampled_at, lag_bytes, apply_age_s}]`` in time order; empty when none were kept."""
    control_schema = _name(control_schema, "control_schema")
    try:
        with target_conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(sqlfiles.compose("native_cdc_lag_samples_read", schema=control_schema),
                               {"database": database}).fetchall()
    except psycopg.errors.UndefinedTable:
        return []
    return [dict(r) for r in rows]
