"""The native engine's data validation: source and target compared chunk by chunk, inside the servers.

Each table is cut into primary-key ranges of ``chunk_rows`` rows computed on the source. For each range
both servers return a row count and an order-independent digest (the sum of a 64-bit slice of every
row's md5), so only two numbers per chunk cross the wire. Tables without a primary key are one chunk.

CDC keeps running while this compares, so a chunk can differ only because the target has not caught
up yet. A differing chunk is recorded in ``<control_schema>.validation_failures`` on the target and
rechecked on later calls until it matches (clean) or has differed on ``max_rechecks`` rechecks
(persistent, which is an error naming the tables and key ranges). The open range above the source's
highest key, where new rows land, is compared only up to the target's highest key there: rows the
target does not have yet are lag (the CDC lag sensor's business), rows only the target has are not.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from migration import sql as q
from migration.config import check_names

log = logging.getLogger(__name__)


class ValidationError(RuntimeError):
    """Mismatches that rechecks proved persistent; the message names the tables and key ranges."""


@dataclass(frozen=True)
class Chunk:
    """One key range of a table: (lo, hi] in key order, None meaning open; keys empty for a whole table."""

    schema: str
    table: str
    keys: tuple[str, ...]
    lo: tuple[str, ...] | None
    hi: tuple[str, ...] | None

    @property
    def key(self) -> str:
        return json.dumps([self.lo, self.hi])

    def describe(self) -> str:
        name = f"{sql.Identifier(self.schema).as_string()}.{sql.Identifier(self.table).as_string()}"
        if not self.keys:
            return f"{name} (whole table, no primary key)"
        cols = ", ".join(self.keys)
        lo = "start" if self.lo is None else f"({', '.join(self.lo)})"
        hi = "end" if self.hi is None else f"({', '.join(self.hi)})"
        return f"{name} keys ({cols}) in ({lo} .. {hi}]"


def _table_ident(schema: str, table: str) -> sql.Identifier:
    return sql.Identifier(schema, table)


def prepare_session(conn: psycopg.Connection) -> None:
    """Pin the settings that change how values print, so equal rows hash alike on both servers."""
    conn.execute(q.load("validation_session"))


def ensure_control_tables(target_conn: psycopg.Connection, control_schema: str) -> None:
    target_conn.execute(q.compose("validation_control_tables", schema=control_schema))


def list_tables(conn: psycopg.Connection, schemas: Sequence[str]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return [dict(r) for r in cur.execute(q.load("validation_tables"), {"schemas": list(schemas)}).fetchall()]


def last_key(conn: psycopg.Connection, chunk: Chunk) -> tuple[str, ...] | None:
    """The highest key of the chunk's range on one server (as text); None when the range is empty."""
    predicate, params = _predicate(chunk)
    key_text = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier("_r", k)) for k in chunk.keys)
    keys_desc = sql.SQL(", ").join(sql.SQL("{} DESC").format(sql.Identifier("_r", k)) for k in chunk.keys)
    query = q.compose("validation_last_key", key_text=key_text, keys_desc=keys_desc, predicate=predicate,
                      table=_table_ident(chunk.schema, chunk.table))
    row = conn.execute(query, params).fetchone()
    return tuple(row) if row else None


def chunk_bounds(source_conn: psycopg.Connection, schema: str, table: str, keys: Sequence[str],
                 chunk_rows: int) -> list[Chunk]:
    """The table's chunks: ranges of ``chunk_rows`` keys on the source up to its highest key, then the
    open range above it (rows inserted since, compared as far as the target has them)."""
    if not keys:
        return [Chunk(schema, table, (), None, None)]
    key_cols = sql.SQL(", ").join(sql.Identifier(k) for k in keys)
    key_text = sql.SQL(", ").join(sql.SQL("s.{}::text").format(sql.Identifier(k)) for k in keys)
    query = q.compose("validation_chunk_bounds", keys=key_cols, key_text=key_text, table=_table_ident(schema, table))
    bounds = [tuple(row) for row in source_conn.execute(query, {"chunk_rows": chunk_rows}).fetchall()]
    top = last_key(source_conn, Chunk(schema, table, tuple(keys), None, None))
    if top is not None and (not bounds or bounds[-1] != top):
        bounds.append(top)
    edges: list[tuple[str, ...] | None] = [None, *bounds, None]
    return [Chunk(schema, table, tuple(keys), edges[i], edges[i + 1]) for i in range(len(edges) - 1)]


def _predicate(chunk: Chunk) -> tuple[sql.Composable, dict[str, str]]:
    if not chunk.keys or (chunk.lo is None and chunk.hi is None):
        return sql.SQL("true"), {}
    cols = sql.SQL(", ").join(sql.Identifier("_r", k) for k in chunk.keys)
    parts, params = [], {}
    # Bounds travel as untyped text, so each server reads them as the key columns' own types.
    for side, op, values in (("lo", ">", chunk.lo), ("hi", "<=", chunk.hi)):
        if values is None:
            continue
        names = [f"{side}{i}" for i in range(len(values))]
        params.update(zip(names, values, strict=True))
        parts.append(sql.SQL("({}) {} ({})").format(cols, sql.SQL(op), sql.SQL(", ").join(map(sql.Placeholder, names))))
    return sql.SQL(" AND ").join(parts), params


def chunk_digest(conn: psycopg.Connection, chunk: Chunk) -> tuple[int, str] | None:
    """(rows, digest) of one chunk on one server; None when the table does not exist there."""
    predicate, params = _predicate(chunk)
    query = q.compose("validation_chunk_digest", table=_table_ident(chunk.schema, chunk.table), predicate=predicate)
    try:
        count, digest = conn.execute(query, params).fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return int(count), digest


def _compare(source_conn, target_conn, chunk: Chunk) -> tuple[bool, tuple | None, tuple | None]:
    if chunk.keys and chunk.hi is None:
        # The open range above the source's highest key takes the inserts made while CDC runs: compare it
        # only up to the target's highest key there, since rows the target does not have yet are lag.
        try:
            top = last_key(target_conn, chunk)
        except psycopg.errors.UndefinedTable:
            return False, chunk_digest(source_conn, chunk), None
        if top is None:
            return True, (0, "0"), (0, "0")
        chunk = Chunk(chunk.schema, chunk.table, chunk.keys, chunk.lo, top)
    # Source first: the target trails it, so reading it second gives it the most time to catch up.
    src = chunk_digest(source_conn, chunk)
    tgt = chunk_digest(target_conn, chunk)
    return src == tgt and src is not None, src, tgt


def _recheck(source_conn, target_conn, chunk: Chunk, attempts: int = 3, pause_s: float = 0.2):
    # A chunk that rows are being written to matches only between writes: a few quick tries find that moment.
    for attempt in range(attempts):
        matched, src, tgt = _compare(source_conn, target_conn, chunk)
        if matched or attempt == attempts - 1:
            return matched, src, tgt
        time.sleep(pause_s)


def _record(target_conn, control_schema: str, validation_id: str, chunk: Chunk, matched: bool, src, tgt,
            max_rechecks: int) -> str:
    params = {
        "validation_id": validation_id, "table_schema": chunk.schema, "table_name": chunk.table,
        "chunk_key": chunk.key, "key_columns": list(chunk.keys),
        "chunk_lo": list(chunk.lo) if chunk.lo is not None else None,
        "chunk_hi": list(chunk.hi) if chunk.hi is not None else None,
        "source_rows": src[0] if src else None, "target_rows": tgt[0] if tgt else None,
        "source_digest": src[1] if src else None, "target_digest": tgt[1] if tgt else None,
        "max_rechecks": max_rechecks,
    }
    if matched:
        target_conn.execute(q.compose("validation_failure_clear", schema=control_schema), params)
        return "clean"
    state, _ = target_conn.execute(q.compose("validation_failure_record", schema=control_schema), params).fetchone()
    return state


def _estimated_rows(source_conn, table: dict[str, Any], chunks: list[Chunk], chunk_rows: int) -> int:
    # Only for the progress line: the planner's estimate, or what the chunk bounds imply, or a count.
    if table["keys"]:
        return max(table["estimated_rows"], (len(chunks) - 1) * chunk_rows + chunk_rows // 2)
    if table["estimated_rows"] > 0:
        return table["estimated_rows"]
    query = q.compose("validation_count", table=_table_ident(table["schema"], table["table"]))
    return source_conn.execute(query).fetchone()[0]


def _full_pass(source_conn, target_conn, *, schemas, control_schema, validation_id, chunk_rows, max_rechecks):
    target_conn.execute(q.compose("validation_run_start", schema=control_schema), {"validation_id": validation_id})
    tables = list_tables(source_conn, schemas)
    plan = [(t, chunk_bounds(source_conn, t["schema"], t["table"], t["keys"], chunk_rows)) for t in tables]
    total = sum(_estimated_rows(source_conn, t, chunks, chunk_rows) for t, chunks in plan) or 1
    rows = mismatched = chunks_done = 0
    next_report = 10.0
    for table, chunks in plan:
        for chunk in chunks:
            matched, src, tgt = _compare(source_conn, target_conn, chunk)
            _record(target_conn, control_schema, validation_id, chunk, matched, src, tgt, max_rechecks)
            mismatched += not matched
            rows += src[0] if src else 0
            chunks_done += 1
            percent = min(100.0, 100.0 * rows / total)
            if percent >= next_report:
                log.info("Validation %s: %.0f%% of rows compared (%d rows, %d chunks, %d mismatched)",
                         validation_id, percent, rows, chunks_done, mismatched)
                next_report = (percent // 10 + 1) * 10
        log.info("Validation %s: table %s.%s compared in %d chunks", validation_id, table["schema"], table["table"],
                 len(chunks))
    target_conn.execute(q.compose("validation_run_complete", schema=control_schema),
                        {"validation_id": validation_id, "tables": len(plan), "chunks": chunks_done,
                         "rows_compared": rows})
    log.info("Validation %s: 100%% of rows compared (%d rows in %d tables, %d chunks, %d mismatched)",
             validation_id, rows, len(plan), chunks_done, mismatched)


def _open_failures(target_conn, control_schema: str, validation_id: str) -> list[dict[str, Any]]:
    with target_conn.cursor(row_factory=dict_row) as cur:
        return [dict(r) for r in cur.execute(q.compose("validation_failures_open", schema=control_schema),
                                             {"validation_id": validation_id}).fetchall()]


def _chunk_of(row: dict[str, Any]) -> Chunk:
    lo, hi = row["chunk_lo"], row["chunk_hi"]
    return Chunk(row["table_schema"], row["table_name"], tuple(row["key_columns"]),
                 tuple(lo) if lo is not None else None, tuple(hi) if hi is not None else None)


def run_validation(source_conn: psycopg.Connection, target_conn: psycopg.Connection, *, schemas: Sequence[str],
                   control_schema: str, validation_id: str, chunk_rows: int = 10000,
                   max_rechecks: int = 3) -> dict[str, Any]:
    """One validation step; call it again (a sensor poke) until it says clean.

    The first call compares every chunk of every table in ``schemas``; later calls recheck only the
    chunks that differed. Returns ``{tables, rows_compared, chunks, mismatched_chunks, persistent,
    pass_complete, clean, failures}``; raises ValidationError when rechecks prove a mismatch
    persistent. Both connections keep the pinned print settings (TimeZone UTC, DateStyle ISO,
    search_path pg_catalog, ...) for the rest of their session.
    """
    schemas = check_names(list(schemas) if not isinstance(schemas, str) else schemas, "validation", "schemas")
    control_schema = check_names([control_schema], "validation", "control_schema")[0]
    if not isinstance(validation_id, str) or not validation_id:
        raise ValueError("validation: validation_id: a non-empty id derived from the migration and database is required")
    for field, value in (("chunk_rows", chunk_rows), ("max_rechecks", max_rechecks)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"validation: {field}: expected a whole number of at least 1, got {value!r}")
    prepare_session(source_conn)
    prepare_session(target_conn)
    ensure_control_tables(target_conn, control_schema)

    run = target_conn.execute(q.compose("validation_run_get", schema=control_schema),
                              {"validation_id": validation_id}).fetchone()
    if not run or not run[3]:
        _full_pass(source_conn, target_conn, schemas=schemas, control_schema=control_schema,
                   validation_id=validation_id, chunk_rows=chunk_rows, max_rechecks=max_rechecks)
    else:
        for row in _open_failures(target_conn, control_schema, validation_id):
            chunk = _chunk_of(row)
            matched, src, tgt = _recheck(source_conn, target_conn, chunk)
            state = _record(target_conn, control_schema, validation_id, chunk, matched, src, tgt, max_rechecks)
            log.info("Validation %s: recheck of %s: %s", validation_id, chunk.describe(), state)

    tables, chunks, rows, _ = target_conn.execute(q.compose("validation_run_get", schema=control_schema),
                                                  {"validation_id": validation_id}).fetchone()
    failures = _open_failures(target_conn, control_schema, validation_id)
    persistent = [f for f in failures if f["state"] == "persistent"]
    result = {
        "tables": tables, "rows_compared": rows, "chunks": chunks, "mismatched_chunks": len(failures),
        "persistent": len(persistent), "pass_complete": True, "clean": not failures,
        "failures": [_chunk_of(f).describe() for f in failures[:20]],
    }
    if persistent:
        ranges = "; ".join(_chunk_of(f).describe() for f in persistent[:20])
        more = f" and {len(persistent) - 20} more" if len(persistent) > 20 else ""
        raise ValidationError(
            f"validation {validation_id}: {len(persistent)} chunk(s) still differ after {max_rechecks} rechecks: "
            f"{ranges}{more}. Compare those key ranges on source and target; details are in "
            f"{control_schema}.validation_failures on the target. Rerun the task after fixing the data.")
    return result


def check_validation(*, source_conn_id: str, target_conn_id: str, database: str, schemas: Sequence[str],
                     control_schema: str, validation_id: str, chunk_rows: int = 10000, max_rechecks: int = 3,
                     source_host: str | None = None, source_port: int | None = None,
                     target_host: str | None = None, target_port: int | None = None) -> tuple[bool, dict[str, Any]]:
    """Sensor check: (clean, {tables, rows_compared, mismatched_chunks, persistent, ...}) for one database."""
    from hooks.postgres import connect  # Airflow is imported only where a check actually runs

    with connect(source_conn_id, dbname=database, host=source_host, port=source_port) as source, \
            connect(target_conn_id, dbname=database, host=target_host, port=target_port) as target:
        result = run_validation(source, target, schemas=schemas, control_schema=control_schema,
                                validation_id=validation_id, chunk_rows=chunk_rows, max_rechecks=max_rechecks)
    result["database"] = database
    return result["clean"], result
