"""Async poll checks for the triggerer: many waits share kept connections and one query per server.

``PollTrigger`` runs these on the triggerer's event loop (named by ``async_check``); the worker's first
check and ``poke`` keep using the plain functions of ``triggers.checks``. What makes 500 waits fit in one
triggerer process:

- one kept ``psycopg.AsyncConnection`` per server (and per database where a table is written or read),
  reopened after a failure; the statements of all waits take turns on it;
- every lag check of one source server that arrives while that server's query runs is answered by the
  next single query (``slot_name = ANY(...)``); the same for subscriptions on the target server
  (``pg_subscription`` and ``pg_stat_subscription`` are the whole server's) and for lag samples written
  to one target database (one pipelined batch);
- the lag samples table is created once per process and database, not on every check;
- connection ids are resolved to connection strings once, in a thread (Airflow's lookup is blocking);
- the loop is not held for long at once: a batch's answers wake their waits ``WAKE_SLICE`` at a time, one
  loop turn each, and the objects alive when this module is imported (in a thread, by ``PollTrigger``) and
  when the first wait starts (the triggerer's imports) are frozen out of the garbage collector's full
  passes (``gc.freeze``), which otherwise stop the loop for tenths of a second with hundreds of waits alive.

A check that needs more than a few quick statements says so (``UseSyncCheck``: the plain check runs in a
thread; ``ResumeInWorker``: the sensor resumes in a worker), so no long work runs on the loop. A native
validation wait only watches: its full pass and its proving rechecks run in the worker.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row

from migration import sql as sqlfiles
from migration import validation
from migration.native_cdc import apply_problem, lag_payload, lag_ready


class UseSyncCheck(Exception):  # noqa: N818 - a signal, not an error
    """This poll needs the plain check (in a thread), e.g. to diagnose a failing apply worker."""


class ResumeInWorker(Exception):  # noqa: N818 - a signal, not an error
    """The wait has work for a worker task (a full pass, a proving recheck); the message says which."""


class KeptConnection:
    """One async connection kept for the process; statements take turns on it; reopened after a failure."""

    def __init__(self, conninfo: str, session_sql: Sequence[Any] = ()):
        self.conninfo = conninfo
        self.session_sql = tuple(session_sql)
        self.conn: psycopg.AsyncConnection | None = None
        self.lock = asyncio.Lock()

    async def run(self, work: Callable[[psycopg.AsyncConnection], Awaitable[Any]]) -> Any:
        async with self.lock:
            if self.conn is None or self.conn.closed:
                self.conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                # As connections.postgres.connect: the cutover's read-only default does not apply to the project.
                await self.conn.execute("SET default_transaction_read_only = off")
                for statement in self.session_sql:
                    await self.conn.execute(statement)
            try:
                return await work(self.conn)
            except (psycopg.OperationalError, psycopg.InterfaceError):
                await self.close()
                raise

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None and not conn.closed:
            await conn.close()


# How many waiting checks one batch's answers wake per loop turn.
WAKE_SLICE = 25


class Batcher:
    """Requests that arrive while one query runs are answered together by the next query.

    ``fetch(keys)`` returns ``{key: answer}``; a key it leaves out is answered with None. The answers
    wake ``WAKE_SLICE`` waiting checks per loop turn, so other work on the loop runs in between.
    """

    def __init__(self, fetch: Callable[[list], Awaitable[dict]]):
        self.fetch = fetch
        self.waiting: dict[Any, list[asyncio.Future]] = {}
        self.drainer: asyncio.Task | None = None

    async def get(self, key: Any) -> Any:
        future = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(key, []).append(future)
        if self.drainer is None or self.drainer.done():
            self.drainer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, {}
            try:
                answers = await self.fetch(list(batch))
            except Exception as exc:  # noqa: BLE001 - every waiting check gets the error
                for futures in batch.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(exc)
                continue
            woken = 0
            try:
                for key, futures in batch.items():
                    for future in futures:
                        if not future.done():
                            future.set_result(answers.get(key))
                            woken += 1
                            if woken % WAKE_SLICE == 0:
                                await asyncio.sleep(0)
            except asyncio.CancelledError:  # the loop is ending: no check waits for good
                for futures in batch.values():
                    for future in futures:
                        future.cancel()
                raise


# Where the server-wide reads connect: every RDS, Aurora and initdb-made server has it.
SERVER_DATABASE = "postgres"


def _server_key(conninfo: str) -> tuple:
    # A server is its connection string without the database: slots and subscriptions are server-wide.
    params = psycopg.conninfo.conninfo_to_dict(conninfo)
    params.pop("dbname", None)
    return tuple(sorted((k, str(v)) for k, v in params.items()))


class _LoopState:
    """The kept connections and batchers of one event loop."""

    def __init__(self) -> None:
        self.conninfos: dict[tuple, str] = {}
        self.connections: dict[tuple, KeptConnection] = {}
        self.batchers: dict[tuple, Batcher] = {}
        self.sample_tables: set[tuple] = set()

    def connection(self, key: tuple, conninfo: str, session_sql: Sequence[Any] = ()) -> KeptConnection:
        if key not in self.connections:
            self.connections[key] = KeptConnection(conninfo, session_sql)
        return self.connections[key]

    def batcher(self, key: tuple, fetch: Callable[[list], Awaitable[dict]]) -> Batcher:
        if key not in self.batchers:
            self.batchers[key] = Batcher(fetch)
        return self.batchers[key]


_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _state() -> _LoopState:
    loop = asyncio.get_running_loop()
    if loop not in _STATES:
        if not _STATES:
            # Everything alive now (the process's imports) is kept for good: the collector's full passes
            # then look only at what the waits make, instead of stopping the loop to walk it all.
            gc.freeze()
        _STATES[loop] = _LoopState()
    return _STATES[loop]


async def close_all() -> None:
    """Close this loop's kept connections (the benchmark and tests call it before their loop ends)."""
    state = _state()
    for conn in list(state.connections.values()):
        await conn.close()
    state.connections.clear()
    state.batchers.clear()


async def conninfo(conn_id: str, dbname: str, host: str | None, port: int | None) -> str:
    """The connection string for an Airflow connection id, looked up once per process in a thread."""
    state = _state()
    key = (conn_id, dbname, host, port)
    if key not in state.conninfos:
        from connections.postgres import conninfo_for

        state.conninfos[key] = await asyncio.to_thread(conninfo_for, conn_id, dbname=dbname, host=host, port=port)
    return state.conninfos[key]


# ---------------------------------------------------------------------------------------------
# Native CDC lag
# ---------------------------------------------------------------------------------------------

async def _slots(server: KeptConnection, slot_names: list[str]) -> dict[str, dict[str, Any]]:
    async def work(conn):
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sqlfiles.load("native_cdc_slot_lag"), {"slots": slot_names})
            return {row["slot_name"]: row for row in await cur.fetchall()}
    return await server.run(work)


async def _applies(server: KeptConnection, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    async def work(conn):
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sqlfiles.load("fleet_apply_states"), {"databases": [k[0] for k in keys],
                                                                    "subscriptions": [k[1] for k in keys]})
            return {(row["database"], row["subscription"]): row for row in await cur.fetchall()}
    return await server.run(work)


async def _write_samples(target: KeptConnection, state: _LoopState, key: tuple, samples: list[tuple]) -> dict:
    async def work(conn):
        for schema in sorted({s[0] for s in samples}):
            if (key, schema) not in state.sample_tables:
                await conn.execute(sqlfiles.compose("native_cdc_lag_samples_table", schema=schema))
                state.sample_tables.add((key, schema))
        async with conn.cursor() as cur:
            for schema in sorted({s[0] for s in samples}):
                rows = [{"database": s[1], "lag_bytes": s[2], "apply_age_s": s[3]} for s in samples if s[0] == schema]
                await cur.executemany(sqlfiles.compose("native_cdc_lag_sample_write", schema=schema), rows)
        return {}
    return await target.run(work)


async def _record_sample(tgt: str, control_schema: str, database: str, lag: dict[str, Any]) -> None:
    state = _state()
    key = ("samples", tgt)
    target = state.connection(key, tgt)
    batcher = state.batcher(key, lambda samples: _write_samples(target, state, key, samples))
    await batcher.get((control_schema, database, lag.get("lag_bytes"), lag.get("apply_age_s"), id(lag)))


async def native_cdc_lag(*, source_conn_id: str, target_conn_id: str, database: str, slot_name: str,
                         subscription: str, max_lag_bytes: int, max_apply_age_s: float,
                         control_schema: str | None = None, schemas: Sequence[str] | None = None,
                         source_host: str | None = None, source_port: int | None = None,
                         target_host: str | None = None, target_port: int | None = None) -> tuple[bool, dict[str, Any]]:
    """The async twin of ``triggers.checks``' native CDC lag check: the same payload, from batched queries.

    A failing apply worker (PostgreSQL 15+ counts its errors) is diagnosed by the plain check
    (``UseSyncCheck``), which also compares the schemas' catalogs.
    """
    state = _state()
    # Slots and subscriptions are server-wide, so their kept connections sit in the maintenance database:
    # one in a migrated database would be a session of the migration's own login there, which the
    # cutover's drain refuses (for this migration and for any other migration of that database).
    src = await conninfo(source_conn_id, SERVER_DATABASE, source_host, source_port)
    tgt = await conninfo(target_conn_id, database, target_host, target_port)
    tgt_server = await conninfo(target_conn_id, SERVER_DATABASE, target_host, target_port)
    src_key, tgt_key = ("server", _server_key(src)), ("server", _server_key(tgt_server))
    source_server, target_server = state.connection(src_key, src), state.connection(tgt_key, tgt_server)
    slots = state.batcher(("slots", src_key), lambda names: _slots(source_server, names))
    applies = state.batcher(("applies", tgt_key), lambda keys: _applies(target_server, keys))
    slot, apply = await asyncio.gather(slots.get(slot_name), applies.get((database, subscription)))
    errors = apply["apply_error_count"] if apply is not None else None
    lag = lag_payload(slot, apply, slot_name=slot_name, subscription=subscription,
                      apply_errors=int(errors) if errors is not None else 0)
    ready = lag_ready(lag, max_lag_bytes, max_apply_age_s)
    if not ready and apply_problem(lag, subscription):
        raise UseSyncCheck(f"subscription {subscription}: the apply worker is failing")
    if control_schema:
        await _record_sample(tgt, control_schema, database, lag)
    lag["database"] = database
    return ready, lag


# ---------------------------------------------------------------------------------------------
# Native validation: the triggerer watches, the worker compares
# ---------------------------------------------------------------------------------------------

async def _chunk_now(source: KeptConnection, target: KeptConnection, chunk: validation.Chunk) -> bool:
    """Whether the chunk's (rows, digest) are equal on both servers now (the open range up to the target's top)."""
    async def one(conn, query, params):
        cur = await conn.execute(query, params)
        return await cur.fetchone()

    if chunk.keys and chunk.hi is None:
        try:
            top = await target.run(lambda conn: one(conn, *validation.last_key_query(chunk)))
        except psycopg.errors.UndefinedTable:
            return False
        if top is None:
            return True
        chunk = validation.Chunk(chunk.schema, chunk.table, chunk.keys, chunk.lo, tuple(top))
    query, params = validation.digest_query(chunk)
    try:
        src, tgt = await asyncio.gather(source.run(lambda conn: one(conn, query, params)),
                                        target.run(lambda conn: one(conn, query, params)))
    except psycopg.errors.UndefinedTable:
        return False
    return tuple(src) == tuple(tgt)


async def native_validation(*, source_conn_id: str, target_conn_id: str, database: str, schemas: Sequence[str],
                            control_schema: str, validation_id: str, run_id: str, watch: dict[str, Any],
                            source_host: str | None = None, source_port: int | None = None,
                            target_host: str | None = None, target_port: int | None = None,
                            **_: Any) -> tuple[bool, dict[str, Any]]:
    """Watch a validation whose full pass is done: each poll compares the open chunks once (two digests each).

    Never done by itself: it resumes the sensor in a worker (``ResumeInWorker``) when the run has no
    complete pass of these schemas, when every open chunk matches now (the worker confirms and returns the
    result), or when chunks still differ after ``watch["polls"]`` polls (the worker runs the proving recheck).
    ``watch`` is the trigger's own state, counted across its polls.
    """
    state = _state()
    src = await conninfo(source_conn_id, database, source_host, source_port)
    tgt = await conninfo(target_conn_id, database, target_host, target_port)
    session = (sqlfiles.load("validation_session"),)
    source = state.connection(("validation", src), src, session)
    target = state.connection(("validation", tgt), tgt, session)
    key = validation.run_key(validation_id, run_id)

    async def control_rows(conn, sql_file):
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sqlfiles.compose(sql_file, schema=control_schema), {"validation_id": key})
            return await cur.fetchall()

    try:
        # Only the worker starts a pass: once this wait has seen its pass complete, it stays complete.
        if not watch.get("pass_complete"):
            runs = await target.run(lambda conn: control_rows(conn, "validation_run_get"))
            if not runs or not runs[0]["complete"] or sorted(runs[0]["schemas"] or []) != sorted(schemas):
                raise ResumeInWorker("no complete pass of these schemas in this run: the worker runs it")
            watch["pass_complete"] = True
        failures = await target.run(lambda conn: control_rows(conn, "validation_failures_open"))
    except psycopg.errors.UndefinedTable:
        raise ResumeInWorker("no validation state on the target yet: the worker runs the full pass") from None
    if any(f["state"] == "persistent" for f in failures):
        raise ResumeInWorker("a chunk turned persistent: the worker reports it")
    differing = 0
    for failure in failures:
        differing += not await _chunk_now(source, target, validation.chunk_of(failure))
    if not differing:
        raise ResumeInWorker("every open chunk matches now: the worker confirms")
    watch["seen"] = watch.get("seen", 0) + 1
    if watch["seen"] >= watch.get("polls", 3):
        raise ResumeInWorker(f"{differing} chunk(s) still differ after {watch['seen']} polls: the worker rechecks")
    return False, {"database": database, "run_id": run_id, "open_chunks": len(failures), "differing": differing}


# Only the triggerer imports this module: what it holds now is kept for the process's life anyway.
gc.freeze()
