"""The native engine's data validation: source and target compared chunk by chunk, inside the servers.

Each table is cut into primary-key ranges of ``chunk_rows`` rows computed on the source. For each range
both servers return a row count and an order-independent digest (the exact sum of every row's 64-bit
``hashtextextended`` of its text), so only two numbers per chunk cross the wire. Tables without a primary
key are one chunk. The target's read of a chunk overlaps the source's read of the next one, so both
servers work at once. Collision bound: taking the row hash as a random 64-bit function, a chunk whose
rows differ has the same count and sum as the other side with probability at most 2^-64 (fix every
differing row's hash but one; exactly one value of that one makes the exact sums equal).

CDC keeps running while this compares, so a chunk can differ only because the target has not caught
up yet. A differing chunk is recorded in ``<control_schema>.validation_failures`` on the target and
rechecked on later calls until it matches (clean) or has differed on ``max_rechecks`` rechecks
(persistent, which is an error naming the tables and key ranges). The open range above the source's
highest key, where new rows land, is compared only up to the target's highest key there: rows the
target does not have yet are lag (the CDC lag sensor's business), rows only the target has are not.

Validation state belongs to one Airflow run (``validation_runs`` and ``validation_failures`` are keyed by
the migration's validation id and the run id): every run makes its own full pass over the schemas it
migrates, and its result says what that pass compared (tables and rows per schema).

A recheck counts only a mismatch proven on a stable source: it reads the source (S1), the source's WAL
position (L1), waits until CDC has applied past L1 (the slot's confirmed position, when ``slot_name``
is given; otherwise a settle pause), then reads the target (T) and the source again (S2). The target
equal to S1 or to S2 is clean; S1 and S2 equal (every row's xmin included) with T different is one
confirmed mismatch; a source that changed between S1 and S2 is in flux and is tried again, row by row
for keyed tables, so that a chunk written to many times a second is settled by each row's quiet
moments. Attempts that prove nothing are not counted.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from migration import sql as sqlfiles
from migration.config import check_names
from migration.lsn import LSN
from migration.native_cdc import slot_positions

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
    conn.execute(sqlfiles.load("validation_session"))


def ensure_control_tables(target_conn: psycopg.Connection, control_schema: str) -> None:
    target_conn.execute(sqlfiles.compose("validation_control_tables", schema=control_schema))


def list_tables(conn: psycopg.Connection, schemas: Sequence[str]) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return [dict(r) for r in cur.execute(sqlfiles.load("validation_tables"), {"schemas": list(schemas)}).fetchall()]


def last_key_query(chunk: Chunk) -> tuple[sql.Composed, dict[str, str]]:
    """The statement and parameters that read the highest key of the chunk's range."""
    predicate, params = _predicate(chunk)
    key_text = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier("_r", k)) for k in chunk.keys)
    keys_desc = sql.SQL(", ").join(sql.SQL("{} DESC").format(sql.Identifier("_r", k)) for k in chunk.keys)
    return sqlfiles.compose("validation_last_key", key_text=key_text, keys_desc=keys_desc, predicate=predicate,
                            table=_table_ident(chunk.schema, chunk.table)), params


def last_key(conn: psycopg.Connection, chunk: Chunk) -> tuple[str, ...] | None:
    """The highest key of the chunk's range on one server (as text); None when the range is empty."""
    row = conn.execute(*last_key_query(chunk)).fetchone()
    return tuple(row) if row else None


def chunk_bounds(source_conn: psycopg.Connection, schema: str, table: str, keys: Sequence[str],
                 chunk_rows: int) -> list[Chunk]:
    """The table's chunks: ranges of ``chunk_rows`` keys on the source up to its highest key, then the
    open range above it (rows inserted since, compared as far as the target has them)."""
    if not keys:
        return [Chunk(schema, table, (), None, None)]
    key_cols = sql.SQL(", ").join(sql.Identifier(k) for k in keys)
    key_text = sql.SQL(", ").join(sql.SQL("s.{}::text").format(sql.Identifier(k)) for k in keys)
    query = sqlfiles.compose("validation_chunk_bounds", keys=key_cols, key_text=key_text,
                             table=_table_ident(schema, table))
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


def digest_query(chunk: Chunk) -> tuple[sql.Composed, dict[str, str]]:
    """The statement and parameters that read one chunk's (rows, digest)."""
    predicate, params = _predicate(chunk)
    return sqlfiles.compose("validation_chunk_digest", table=_table_ident(chunk.schema, chunk.table),
                            predicate=predicate), params


def chunk_digest(conn: psycopg.Connection, chunk: Chunk) -> tuple[int, str] | None:
    """(rows, digest) of one chunk on one server; None when the table does not exist there."""
    try:
        count, digest = conn.execute(*digest_query(chunk)).fetchone()
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


def _compare_chunks(source_conn, target_conn, chunks: Sequence[Chunk],
                    pool: ThreadPoolExecutor) -> Iterator[tuple[Chunk, bool, tuple | None, tuple | None]]:
    """(chunk, matched, src, tgt) of each chunk in order. Each chunk's target read starts once its source
    read is done (the target gets the most time to catch up) and runs while the source reads the next chunk.
    ``target_conn`` is used only in ``pool`` (one thread) until each result is yielded."""
    pending: tuple[Chunk, tuple | None, Future] | None = None

    def finish() -> tuple[Chunk, bool, tuple | None, tuple | None]:
        chunk, src, future = pending
        tgt = future.result()
        return chunk, src == tgt and src is not None, src, tgt

    for chunk in chunks:
        if chunk.keys and chunk.hi is None:
            # The open range reads the target's highest key first: compared on its own, after the rest.
            if pending:
                yield finish()
                pending = None
            yield (chunk, *_compare(source_conn, target_conn, chunk))
            continue
        src = chunk_digest(source_conn, chunk)
        if pending:
            yield finish()
        pending = (chunk, src, pool.submit(chunk_digest, target_conn, chunk))
    if pending:
        yield finish()


@dataclass(frozen=True)
class RecheckPolicy:
    """How a recheck waits for CDC and how long it keeps trying a chunk whose source keeps changing."""

    slot_name: str | None = None
    cdc_wait_s: float = 15.0
    settle_s: float = 1.0
    attempts: int = 20
    budget_s: float = 5.0


@dataclass(frozen=True)
class RecheckOutcome:
    """``state`` is clean, mismatch (confirmed on a stable source), in_flux or cdc_behind (both undetermined)."""

    state: str
    src: tuple[int, str] | None
    tgt: tuple[int, str] | None
    attempts: int
    differing_keys: tuple[tuple[str, ...], ...] = ()


# XLogPageHeaderData and XLogLongPageHeaderData, MAXALIGNed: the insert position skips them at a page start.
_SHORT_PAGE_HEADER, _LONG_PAGE_HEADER = 24, 40


def wal_position(source_conn: psycopg.Connection) -> LSN:
    """The end of the WAL the source has inserted: every commit a statement before this one saw ends at or before it."""
    try:
        position, block, segment = source_conn.execute(sqlfiles.load("validation_wal_position")).fetchone()
    except (psycopg.errors.FeatureNotSupported, psycopg.errors.UndefinedFunction):
        return LSN(source_conn.execute(sqlfiles.load("validation_wal_write_position")).fetchone()[0])
    lsn = LSN(position)
    # Just past a page header the WAL before ends at the page boundary, and that is where decoding stops.
    header = _LONG_PAGE_HEADER if lsn % segment < block else _SHORT_PAGE_HEADER
    return LSN(lsn - header) if lsn % block == header else lsn


def cdc_applied_past(source_conn: psycopg.Connection, slot_name: str, position: LSN, wait_s: float) -> bool:
    """Wait up to ``wait_s`` for the slot's confirmed position to reach ``position``; whether it did."""
    deadline = time.monotonic() + wait_s
    while True:
        slot = slot_positions(source_conn, [slot_name]).get(slot_name)
        if slot is None:
            raise ValueError(f"validation: slot_name: slot {slot_name!r} does not exist on the source, so "
                             "CDC progress cannot be proven; pass the slot the subscription uses")
        confirmed = slot["confirmed_flush_lsn"]
        if confirmed is not None and LSN(confirmed) >= position:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


def _source_versioned(source_conn, chunk: Chunk) -> tuple[int, str, str] | None:
    predicate, params = _predicate(chunk)
    query = sqlfiles.compose("validation_chunk_digest_versioned", table=_table_ident(chunk.schema, chunk.table),
                             predicate=predicate)
    try:
        count, digest, version = source_conn.execute(query, params).fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return int(count), digest, version


def chunk_rows(conn: psycopg.Connection, chunk: Chunk) -> dict[tuple[str, ...], tuple[str, str]] | None:
    """Every row of a chunk on one server, as {identity: (compared value, version)}; None when the table is missing.

    A keyed row is identified by its key, compared by its 64-bit hash, and versioned by that hash and its
    xmin. Rows of a table without a key are grouped by content: identified by their hash, compared by
    how many copies there are, and versioned by those copies' xmins.
    """
    predicate, params = _predicate(chunk)
    table = _table_ident(chunk.schema, chunk.table)
    if chunk.keys:
        key_text = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier("_r", k)) for k in chunk.keys)
        query = sqlfiles.compose("validation_chunk_rows", key_text=key_text, table=table, predicate=predicate)
    else:
        query = sqlfiles.compose("validation_chunk_row_groups", table=table, predicate=predicate)
    width = max(len(chunk.keys), 1)
    try:
        rows = conn.execute(query, params).fetchall()
    except psycopg.errors.UndefinedTable:
        return None
    if chunk.keys:
        return {tuple(row[:width]): (row[width], (row[width], row[width + 1])) for row in rows}
    return {(row[0],): (row[1], row[2]) for row in rows}


def _digest_of(chunk: Chunk, rows: dict[tuple[str, ...], tuple[str, Any]] | None) -> tuple[int, str] | None:
    # The chunk's (rows, digest) from its rows, summed as validation_chunk_digest sums them (exact sum).
    if rows is None:
        return None
    count = total = 0
    for identity, (compared, _) in rows.items():
        row_hash, copies = (compared, 1) if chunk.keys else (identity[0], int(compared))
        total += copies * int(row_hash)
        count += copies
    return count, str(total)


def _clamped(target_conn, chunk: Chunk) -> Chunk | None:
    # The open range is compared only up to the target's highest key there; None when the target has none.
    if not chunk.keys or chunk.hi is not None:
        return chunk
    try:
        top = last_key(target_conn, chunk)
    except psycopg.errors.UndefinedTable:
        return chunk
    return None if top is None else Chunk(chunk.schema, chunk.table, chunk.keys, chunk.lo, top)


def _wait_for_cdc(source_conn, policy: RecheckPolicy, position: LSN) -> bool:
    if policy.slot_name is None:
        # Without a slot to ask, a pause stands in for proof that CDC has applied what the source had.
        time.sleep(policy.settle_s)
        return True
    return cdc_applied_past(source_conn, policy.slot_name, position, policy.cdc_wait_s)


def _chunk_attempt(source_conn, target_conn, chunk: Chunk,
                   policy: RecheckPolicy) -> tuple[str, tuple | None, tuple | None]:
    s1 = _source_versioned(source_conn, chunk)
    proven = _wait_for_cdc(source_conn, policy, wal_position(source_conn))
    tgt = chunk_digest(target_conn, chunk)
    s2 = _source_versioned(source_conn, chunk)
    if tgt in (s1[:2] if s1 else None, s2[:2] if s2 else None):
        return "clean", s2[:2] if s2 else None, tgt
    if not proven:
        return "cdc_behind", s2[:2] if s2 else None, tgt
    return ("mismatch" if s1 == s2 else "in_flux"), s2[:2] if s2 else None, tgt


def _compared(row: tuple[str, Any] | None) -> str | None:
    return row[0] if row else None


def _rows_attempt(source_conn, target_conn, chunk: Chunk, policy: RecheckPolicy, matched: set):
    source_before = chunk_rows(source_conn, chunk)
    proven = _wait_for_cdc(source_conn, policy, wal_position(source_conn))
    target_rows = chunk_rows(target_conn, chunk)
    source_after = chunk_rows(source_conn, chunk)
    m1, mt, m2 = source_before or {}, target_rows or {}, source_after or {}
    # A row absent from both source reads may still have come and gone in between; only a chunk that did
    # not change at all proves that a row the target alone has is extra.
    chunk_stable = source_before == source_after
    differing, unsettled = [], 0
    for identity in m1.keys() | mt.keys() | m2.keys():
        s1, t, s2 = m1.get(identity), mt.get(identity), m2.get(identity)
        if _compared(t) in (_compared(s1), _compared(s2)):
            matched.add(identity)
        elif proven and s1 == s2 and (s1 is not None or chunk_stable):
            differing.append(identity)
        elif identity not in matched:
            unsettled += 1
    src, tgt = _digest_of(chunk, source_after), _digest_of(chunk, target_rows)
    if differing:
        return "mismatch", src, tgt, sorted(differing)
    if unsettled:
        return ("in_flux" if proven else "cdc_behind"), src, tgt, []
    return "clean", src, tgt, []


def _recheck(source_conn, target_conn, chunk: Chunk, policy: RecheckPolicy) -> RecheckOutcome:
    """Settle one recorded chunk: clean, a mismatch proven on a stable source, or undetermined."""
    matched, src, tgt = _compare(source_conn, target_conn, chunk)
    if matched:
        return RecheckOutcome("clean", src, tgt, 0)
    effective = _clamped(target_conn, chunk)
    if effective is None:
        return RecheckOutcome("clean", (0, "0"), (0, "0"), 0)
    started = time.monotonic()
    by_rows = False
    matched_keys: set[tuple[str, ...]] = set()
    state = "in_flux"
    attempt = 0
    while attempt < policy.attempts and (attempt == 0 or time.monotonic() - started < policy.budget_s):
        attempt += 1
        if by_rows:
            state, src, tgt, differing = _rows_attempt(source_conn, target_conn, effective, policy, matched_keys)
            if state == "mismatch":
                return RecheckOutcome(state, src, tgt, attempt, tuple(differing))
        else:
            state, src, tgt = _chunk_attempt(source_conn, target_conn, effective, policy)
        if state != "in_flux":
            return RecheckOutcome(state, src, tgt, attempt)
        # A chunk that keeps changing is settled row by row: each row needs only its own quiet moment.
        by_rows = True
    return RecheckOutcome(state, src, tgt, attempt)


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
        target_conn.execute(sqlfiles.compose("validation_failure_clear", schema=control_schema), params)
        return "clean"
    state, _ = target_conn.execute(sqlfiles.compose("validation_failure_record", schema=control_schema),
                                   params).fetchone()
    return state


def _estimated_rows(source_conn, table: dict[str, Any], chunks: list[Chunk], chunk_rows: int) -> int:
    # Only for the progress line: the planner's estimate, or what the chunk bounds imply, or a count.
    if table["keys"]:
        return max(table["estimated_rows"], (len(chunks) - 1) * chunk_rows + chunk_rows // 2)
    if table["estimated_rows"] > 0:
        return table["estimated_rows"]
    query = sqlfiles.compose("validation_count", table=_table_ident(table["schema"], table["table"]))
    return source_conn.execute(query).fetchone()[0]


def _full_pass(source_conn, target_conn, *, schemas, control_schema, validation_id, run_id, chunk_rows,
               max_rechecks):
    target_conn.execute(sqlfiles.compose("validation_run_start", schema=control_schema),
                        {"validation_id": validation_id, "run_id": run_id, "schemas": list(schemas)})
    target_conn.execute(sqlfiles.compose("validation_failures_reset", schema=control_schema),
                        {"validation_id": validation_id})
    tables = list_tables(source_conn, schemas)
    by_schema: dict[str, dict[str, int]] = {s: {"tables": 0, "rows": 0} for s in schemas}
    plan = [(t, chunk_bounds(source_conn, t["schema"], t["table"], t["keys"], chunk_rows)) for t in tables]
    total = sum(_estimated_rows(source_conn, t, chunks, chunk_rows) for t, chunks in plan) or 1
    rows = mismatched = chunks_done = 0
    next_report = 10.0
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="validation-target")
    try:
        for table, chunks in plan:
            by_schema[table["schema"]]["tables"] += 1
            progress = _pass_table(source_conn, target_conn, chunks, pool, control_schema=control_schema,
                                   validation_id=validation_id, max_rechecks=max_rechecks)
            for chunk_rows_compared, chunk_matched in progress:
                mismatched += not chunk_matched
                rows += chunk_rows_compared
                by_schema[table["schema"]]["rows"] += chunk_rows_compared
                chunks_done += 1
                percent = min(100.0, 100.0 * rows / total)
                if percent >= next_report:
                    log.info("Validation %s: %.0f%% of rows compared (%d rows, %d chunks, %d mismatched)",
                             validation_id, percent, rows, chunks_done, mismatched)
                    next_report = (percent // 10 + 1) * 10
            log.info("Validation %s: table %s.%s compared in %d chunks", validation_id, table["schema"],
                     table["table"], len(chunks))
    finally:
        pool.shutdown(wait=True)
    target_conn.execute(sqlfiles.compose("validation_run_complete", schema=control_schema),
                        {"validation_id": validation_id, "tables": len(plan), "chunks": chunks_done,
                         "rows_compared": rows, "by_schema": Jsonb(by_schema)})
    log.info("Validation %s: 100%% of rows compared (%d rows in %d tables, %d chunks, %d mismatched)",
             validation_id, rows, len(plan), chunks_done, mismatched)


def _pass_table(source_conn, target_conn, chunks, pool, *, control_schema, validation_id, max_rechecks):
    # (rows, matched) per chunk of one table; a full pass starts with no failures, so only mismatches are recorded.
    for chunk, matched, src, tgt in _compare_chunks(source_conn, target_conn, chunks, pool):
        if not matched:
            _record(target_conn, control_schema, validation_id, chunk, matched, src, tgt, max_rechecks)
        yield (src[0] if src else 0), matched


def run_key(validation_id: str, run_id: str) -> str:
    """The key of one run's validation state: the migration's validation id and the Airflow run id."""
    return f"{validation_id}@{run_id}"


def _run_record(target_conn, control_schema: str, validation_id: str) -> dict[str, Any] | None:
    with target_conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(sqlfiles.compose("validation_run_get", schema=control_schema),
                          {"validation_id": validation_id}).fetchone()
    return dict(row) if row else None


def _open_failures(target_conn, control_schema: str, validation_id: str) -> list[dict[str, Any]]:
    with target_conn.cursor(row_factory=dict_row) as cur:
        return [dict(r) for r in cur.execute(sqlfiles.compose("validation_failures_open", schema=control_schema),
                                             {"validation_id": validation_id}).fetchall()]


def chunk_of(row: dict[str, Any]) -> Chunk:
    lo, hi = row["chunk_lo"], row["chunk_hi"]
    return Chunk(row["table_schema"], row["table_name"], tuple(row["key_columns"]),
                 tuple(lo) if lo is not None else None, tuple(hi) if hi is not None else None)


def _number(value: Any, field: str, *, whole: bool = False, minimum: float = 0) -> Any:
    kind = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, int if whole else int | float) or value < minimum:
        raise ValueError(f"validation: {field}: expected {kind} of at least {minimum:g}, got {value!r}")
    return value


def run_validation(source_conn: psycopg.Connection, target_conn: psycopg.Connection, *, schemas: Sequence[str],
                   control_schema: str, validation_id: str, run_id: str, chunk_rows: int = 10000,
                   max_rechecks: int = 3, slot_name: str | None = None, cdc_wait_s: float = 15.0,
                   settle_s: float = 1.0, recheck_attempts: int = 20, recheck_budget_s: float = 5.0) -> dict[str, Any]:
    """One validation step; call it again (a sensor poke) until it says clean.

    Validation state belongs to one run: it is kept under ``validation_id`` (the migration's) together
    with ``run_id`` (the Airflow run's), so a later run never inherits an earlier run's clean pass. The
    first call of a run compares every chunk of every table in ``schemas`` (again, when the run's
    recorded pass covered other schemas); later calls of the same run recheck only the chunks that
    differed. A recheck counts only a mismatch proven on a stable source after CDC has
    applied past the source's WAL position (``slot_name``: the source slot the subscription uses,
    waited on for at most ``cdc_wait_s``; without it a ``settle_s`` pause). A chunk whose source keeps
    changing is tried up to ``recheck_attempts`` times within ``recheck_budget_s`` seconds, then left
    undetermined (``in_flux``) for the next call. Returns ``{tables, rows_compared, chunks,
    mismatched_chunks, persistent, in_flux, pass_complete, clean, failures, run_id, schemas, by_schema,
    compared_at}`` (what this run's full pass compared, per schema: ``{tables, rows}``); raises ValidationError
    when rechecks prove a mismatch persistent. Both connections keep the pinned print settings
    (TimeZone UTC, DateStyle ISO, search_path pg_catalog, ...) for the rest of their session.
    """
    schemas = check_names(list(schemas) if not isinstance(schemas, str) else schemas, "validation", "schemas")
    control_schema = check_names([control_schema], "validation", "control_schema")[0]
    if not isinstance(validation_id, str) or not validation_id:
        raise ValueError("validation: validation_id: a non-empty id derived from the migration and database is "
                         "required")
    if not isinstance(run_id, str) or not run_id.strip() or "{{" in run_id:
        raise ValueError(f"validation: run_id: the Airflow run's id is required (validation state belongs to a run), "
                         f"got {run_id!r}")
    migration_validation_id, validation_id = validation_id, run_key(validation_id, run_id)
    for field, value in (("chunk_rows", chunk_rows), ("max_rechecks", max_rechecks),
                         ("recheck_attempts", recheck_attempts)):
        _number(value, field, whole=True, minimum=1)
    for field, value in (("cdc_wait_s", cdc_wait_s), ("settle_s", settle_s), ("recheck_budget_s", recheck_budget_s)):
        _number(value, field)
    if slot_name is not None:
        slot_name = check_names([slot_name], "validation", "slot_name")[0]
        if slot_name not in slot_positions(source_conn, [slot_name]):
            raise ValueError(f"validation: slot_name: slot {slot_name!r} does not exist on the source; pass the "
                             "slot the subscription uses")
    policy = RecheckPolicy(slot_name=slot_name, cdc_wait_s=float(cdc_wait_s), settle_s=float(settle_s),
                           attempts=recheck_attempts, budget_s=float(recheck_budget_s))
    prepare_session(source_conn)
    prepare_session(target_conn)
    ensure_control_tables(target_conn, control_schema)

    run = _run_record(target_conn, control_schema, validation_id)
    in_flux = 0
    if not run or not run["complete"] or sorted(run["schemas"] or []) != sorted(schemas):
        _full_pass(source_conn, target_conn, schemas=schemas, control_schema=control_schema,
                   validation_id=validation_id, run_id=run_id, chunk_rows=chunk_rows, max_rechecks=max_rechecks)
    else:
        cdc_behind = False
        for row in _open_failures(target_conn, control_schema, validation_id):
            chunk = chunk_of(row)
            if cdc_behind:
                # CDC did not reach a recent position in time: only a plain compare, nothing to prove now.
                matched, src, tgt = _compare(source_conn, target_conn, chunk)
                outcome = RecheckOutcome("clean" if matched else "cdc_behind", src, tgt, 0)
            else:
                outcome = _recheck(source_conn, target_conn, chunk, policy)
            if outcome.state in ("clean", "mismatch"):
                state = _record(target_conn, control_schema, validation_id, chunk, outcome.state == "clean",
                                outcome.src, outcome.tgt, max_rechecks)
            else:
                in_flux += 1
                cdc_behind = cdc_behind or outcome.state == "cdc_behind"
                state = f"{outcome.state}, not counted"
            keys = ""
            if outcome.differing_keys:
                shown = "; ".join(f"({', '.join(k)})" for k in outcome.differing_keys[:5])
                more = f" and {len(outcome.differing_keys) - 5} more" if len(outcome.differing_keys) > 5 else ""
                keys = f"; rows differing: {shown}{more}"
            log.info("Validation %s: recheck of %s: %s after %d attempt(s)%s", validation_id, chunk.describe(), state,
                     outcome.attempts, keys)

    run = _run_record(target_conn, control_schema, validation_id)
    failures = _open_failures(target_conn, control_schema, validation_id)
    persistent = [f for f in failures if f["state"] == "persistent"]
    result = {
        "tables": run["tables"], "rows_compared": run["rows_compared"], "chunks": run["chunks"],
        "mismatched_chunks": len(failures), "persistent": len(persistent), "in_flux": in_flux, "pass_complete": True,
        "clean": not failures, "failures": [chunk_of(f).describe() for f in failures[:20]],
        "validation_id": migration_validation_id, "run_id": run_id, "schemas": list(run["schemas"] or schemas),
        "by_schema": run["by_schema"] or {}, "compared_at": run["compared_at"],
    }
    if persistent:
        ranges = "; ".join(chunk_of(f).describe() for f in persistent[:20])
        more = f" and {len(persistent) - 20} more" if len(persistent) > 20 else ""
        raise ValidationError(
            f"validation {migration_validation_id} (run {run_id}): {len(persistent)} chunk(s) still differ after "
            f"{max_rechecks} rechecks: "
            f"{ranges}{more}. Compare those key ranges on source and target; details are in "
            f"{control_schema}.validation_failures on the target. Rerun the task after fixing the data.")
    return result
