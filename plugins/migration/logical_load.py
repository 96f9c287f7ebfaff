"""Logical initial load (``initial_load: pg_dump``): one database dumped at a slot's exported snapshot.

The boundary is exact. The slot is created on a replication connection with ``(SNAPSHOT 'export')``;
that connection stays open while ``pg_dump --snapshot=<id> -Fd -j N`` reads, so the dump holds exactly
what was committed before the slot's consistent point, and the subscription that later streams from
the slot (``create_slot = false``, ``copy_data = false``, origin at the consistent point) applies exactly
what came after. ``pg_restore -j`` then loads the sections in order: pre-data, data, post-data, so indexes,
constraints and triggers are built after the rows (and no trigger fires while they load).

The target database is created when missing; an existing one must be empty (its contents are named
otherwise). A row in ``<control_schema>.logical_load`` of the target database records the load:
``loading`` from before the slot exists, ``loaded`` with the consistent point once the restore is done.
A rerun of a finished load changes nothing; a rerun after a load that died (its snapshot died with it)
drops the half-loaded database (or, in a database that existed before, the migrated schemas) and the
slot, and starts again.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pgsql
from psycopg.rows import dict_row

from migration import slots
from migration import sql as sqlfiles
from migration.credentials import temporary_passfile
from migration.logical_roles import (
    LogicalLoadError,
    is_reserved_role,
    major_of,
    missing_roles,
    tools_for,
    version_problem,
)
from migration.preflight import Finding, validate_identifier, validate_schemas
from migration.target_prep import create_control_schema

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 10.0  # progress lines at least this often (the promise is every 30 s)
SLOT_RELEASE_TIMEOUT_S = 30.0


def dump_directory_for(migration_id: str, database: str, root: str | Path | None = None) -> Path:
    """Where the dump of one database goes: ``<root>/<migration_id>/<database>``; without a root, under the
    system's temporary folder. The load empties and removes that folder only, never ``root``."""
    base = Path(root) if root else Path(tempfile.gettempdir()) / "pg-account-migration-dumps"
    return base / validate_identifier(migration_id, field="migration_id") / validate_identifier(database,
                                                                                                  field="database")


# ---------------------------------------------------------------- the target database

def _connect(conninfo: str, **kwargs: Any) -> psycopg.Connection:
    conn = psycopg.connect(conninfo, autocommit=True, **kwargs)
    conn.execute(sqlfiles.load("logical_load_read_write"))
    return conn


def database_contents(conn: psycopg.Connection, control_schema: str) -> list[str]:
    """What a target database holds besides an empty ``public`` schema and the control schema."""
    rows = conn.execute(sqlfiles.load("logical_load_contents"), {"control_schema": control_schema}).fetchall()
    return [f"{kind} {name}" for kind, name in rows]


def read_marker(conn: psycopg.Connection, control_schema: str, migration_id: str) -> dict[str, Any] | None:
    """The load's row in the target database, or None."""
    if conn.execute(sqlfiles.load("logical_load_marker_find"), {"schema": control_schema}).fetchone() is None:
        return None
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(sqlfiles.compose("logical_load_marker_read", schema=control_schema),
                          {"migration_id": migration_id}).fetchone()
    return dict(row) if row else None


def target_state(admin_conn: psycopg.Connection, target_conninfo: str, database: str, control_schema: str,
                 migration_id: str) -> dict[str, Any]:
    """``{state, marker, contents}``: ``missing``, ``empty``, ``loading`` (an earlier load died), ``loaded``
    or ``not_empty`` (with what was found)."""
    if admin_conn.execute(sqlfiles.load("logical_load_database_exists"), {"database": database}).fetchone() is None:
        return {"state": "missing", "marker": None, "contents": []}
    with _connect(target_conninfo) as conn:
        marker = read_marker(conn, control_schema, migration_id)
        if marker is not None:
            return {"state": marker["state"], "marker": marker, "contents": []}
        contents = database_contents(conn, control_schema)
    return {"state": "not_empty" if contents else "empty", "marker": None, "contents": contents}


def _discard_half_load(admin_conn: psycopg.Connection, target_conninfo: str, database: str, schemas: Sequence[str],
                       marker: dict[str, Any], control_schema: str, migration_id: str) -> None:
    if marker["created_database"]:
        log.warning("Database %s holds a load that did not finish: dropping it to start again", database)
        admin_conn.execute(sqlfiles.compose("logical_load_drop_database", database=database))
        return
    log.warning("Database %s existed before the load, which did not finish: dropping its migrated schemas %s",
                database, list(schemas))
    with _connect(target_conninfo) as conn, conn.transaction():
        for schema in schemas:
            conn.execute(sqlfiles.compose("logical_load_drop_schema", schema=schema))
        conn.execute(sqlfiles.compose("logical_load_marker_start", schema=control_schema),
                     {"migration_id": migration_id, "slot_name": marker["slot_name"], "created_database": False})


def _drop_stale_slot(source_conn: psycopg.Connection, slot_name: str) -> None:
    """Drop a slot that an earlier, dead attempt left; its reader (that attempt's walsender) is ended."""
    deadline = time.monotonic() + SLOT_RELEASE_TIMEOUT_S
    while True:
        row = source_conn.execute(sqlfiles.load("logical_load_slot"), {"slot_name": slot_name}).fetchone()
        if row is None:
            return
        if row[1] is None:
            slots.drop_slot(source_conn, slot_name)
            log.warning("Dropped slot %s left by an earlier attempt", slot_name)
            return
        if time.monotonic() > deadline:
            raise LogicalLoadError(f"slot {slot_name} is still in use by pid {row[1]}; stop its reader and run again")
        # The walsender of a killed load exits once the server sees its client gone; one that lingers is ended.
        source_conn.execute(sqlfiles.load("logical_load_end_slot_reader"), {"slot_name": slot_name})
        time.sleep(0.5)


def _create_database(source_conn: psycopg.Connection, admin_conn: psycopg.Connection, database: str,
                     say: Callable[[str], None]) -> None:
    """The target database with the source's encoding and locale, owned by the source's owner when the
    target has that role (reserved owners such as rdsadmin stay with the connecting role)."""
    with source_conn.cursor(row_factory=dict_row) as cur:
        src = cur.execute(sqlfiles.load("logical_load_source_database")).fetchone()
    admin_conn.execute(sqlfiles.compose("logical_load_create_database", database=database,
                                        encoding=pgsql.Literal(src["encoding"]), collate=pgsql.Literal(src["collate"]),
                                        ctype=pgsql.Literal(src["ctype"])))
    owner = src["owner"]
    if not is_reserved_role(owner) and admin_conn.execute(sqlfiles.load("logical_load_roles_existing"),
                                                          {"roles": [owner]}).fetchone():
        admin_conn.execute(sqlfiles.compose("logical_load_database_owner", database=database, owner=owner))
    say(f"Created database {database} on the target ({src['encoding']}, collate {src['collate']}, ctype "
        f"{src['ctype']}, owner {owner if not is_reserved_role(owner) else 'the connecting role'})")


DATABASE_PRIVILEGES = ("CONNECT", "CREATE", "TEMPORARY")


def _setting_name(name: str) -> pgsql.Composable:
    # A custom setting is qualified (myapp.tenant): each part an identifier.
    return pgsql.SQL(".").join(pgsql.Identifier(part) for part in name.split("."))


def copy_database_properties(source_conn: psycopg.Connection, admin_conn: psycopg.Connection, database: str,
                             say: Callable[[str], None]) -> dict[str, list[str]]:
    """What pg_dump leaves out without ``--create``, onto a database the load created: the source database's
    settings (``ALTER DATABASE ... SET``), its roles' settings in it (``ALTER ROLE ... IN DATABASE ... SET``)
    and its CONNECT, CREATE and TEMPORARY grants (PUBLIC's too, when the source changed them).

    A setting is taken over exactly as stored: it is set for the transaction with ``set_config`` and kept
    with ``... SET name FROM CURRENT``. What cannot be copied (a role the target lacks, a setting the
    target refuses: one its version no longer has, one only a superuser may make) is left out, and the
    returned ``skipped`` says why; the load goes on. The target's database ACL becomes the source's.
    """
    copied, skipped = [], []
    with source_conn.cursor(row_factory=dict_row) as cur:
        settings = cur.execute(sqlfiles.load("logical_load_database_settings")).fetchall()
        grants = cur.execute(sqlfiles.load("logical_load_database_grants")).fetchall()
    named = {row["role"] for row in settings if row["role"]} | {row["grantee"] for row in grants if row["grantee"]}
    present = {row[0] for row in admin_conn.execute(sqlfiles.load("logical_load_roles_existing"),
                                                    {"roles": sorted(named)}).fetchall()}

    def apply(what: str, statements: list[tuple[pgsql.Composable | str, dict[str, Any] | None]]) -> None:
        try:
            with admin_conn.transaction():
                for statement, params in statements:
                    admin_conn.execute(statement, params)
            copied.append(what)
        except psycopg.Error as exc:
            skipped.append(f"{what}: {str(exc).strip().splitlines()[0]}")

    for row in settings:
        role, name = row["role"], row["name"]
        what = f"{'database' if role is None else f'role {role}'} setting {name}"
        if role is not None and role not in present:
            skipped.append(f"{what}: the role does not exist on the target")
            continue
        alter = (sqlfiles.compose("logical_load_database_setting", database=database, setting=_setting_name(name))
                 if role is None else sqlfiles.compose("logical_load_role_setting", role=role, database=database,
                                                       setting=_setting_name(name)))
        apply(what, [(sqlfiles.load("logical_load_setting_local"), {"name": name, "value": row["value"]}),
                     (alter, None)])
    # The target's ACL becomes the source's: PUBLIC's defaults go, then every grant the source has is made.
    statements: list[tuple[pgsql.Composable | str, dict[str, Any] | None]] = [
        (sqlfiles.compose("logical_load_database_revoke_public", database=database), None)]
    for row in grants:
        privilege, grantee = row["privilege_type"], row["grantee"]
        if privilege not in DATABASE_PRIVILEGES:  # all a database has; checked before it goes into SQL
            continue
        if grantee is not None and grantee not in present:
            skipped.append(f"{privilege} on database {database} to {grantee}: the role does not exist on the target")
            continue
        statements.append((sqlfiles.compose(
            "database_grant", privilege=pgsql.SQL(privilege), database=database,
            grantee=pgsql.SQL("PUBLIC") if grantee is None else pgsql.Identifier(grantee),
            grant_option=pgsql.SQL(" WITH GRANT OPTION" if row["is_grantable"] else "")), None))
    apply(f"privileges on database {database}", statements)
    say(f"Database {database}: copied {len(copied)} setting(s) and privilege set(s) from the source"
        + (f"; not copied: {'; '.join(skipped)}" if skipped else ""))
    return {"copied": copied, "skipped": skipped}


# ---------------------------------------------------------------- child processes and progress

# Loaded in the parent: between fork and exec the child only calls prctl.
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: the tool dies with the task that runs it


class Progress:
    """Per-table progress of one phase (dump or data restore) from ``pg_stat_progress_copy``."""

    def __init__(self, phase: str, database: str, tables: list[dict[str, Any]], log_fn: Callable[[str], None], *,
                 datname: str | None = None):
        self.phase, self.database, self.log_fn = phase, database, log_fn
        self.datname = datname or database  # the database the COPY runs in, on the server watched
        self.estimates = {(t["schema"], t["table_name"]): int(t["rows_estimate"]) for t in tables}
        self.total = max(sum(self.estimates.values()), 1)
        self.started = time.monotonic()
        self.seen: set[tuple[str, str]] = set()
        self.active: dict[tuple[str, str], int] = {}

    def sample(self, conn: psycopg.Connection) -> None:
        rows = conn.execute(sqlfiles.load("logical_load_copy_progress"), {"database": self.datname}).fetchall()
        self.active = {(r[0], r[1]): int(r[2]) for r in rows if (r[0], r[1]) in self.estimates}
        self.seen |= set(self.active)

    def line(self) -> str:
        done_tables = self.seen - set(self.active)
        rows_done = sum(self.estimates[t] for t in done_tables) + sum(self.active.values())
        fraction = min(rows_done / self.total, 1.0)
        elapsed = time.monotonic() - self.started
        eta = f"{elapsed * (1 - fraction) / fraction:.0f} s" if fraction > 0 else "unknown"
        tables = "; ".join(f"{s}.{t} {n}/{self.estimates[(s, t)]} rows" for (s, t), n in sorted(self.active.items()))
        return (f"{self.phase} {self.database}: {len(done_tables)}/{len(self.estimates)} tables done, about "
                f"{fraction:.0%} of {self.total} rows after {elapsed:.0f} s, ETA {eta}"
                + (f"; now {tables}" if tables else ""))


class IndexProgress(Progress):
    """Post-data: the indexes being built (``pg_stat_progress_create_index``), per table."""

    def __init__(self, database: str, tables: list[dict[str, Any]], log_fn: Callable[[str], None]):
        super().__init__("post-data", database, tables, log_fn)
        self.building: list[str] = []

    def sample(self, conn: psycopg.Connection) -> None:
        rows = conn.execute(sqlfiles.load("logical_load_index_progress"), {"database": self.datname}).fetchall()
        self.building = [f"{index or 'index'} on {table}: {phase}"
                         + (f", {done / total:.0%} of its blocks" if total else "")
                         for table, index, phase, done, total in rows]

    def line(self) -> str:
        return (f"{self.phase} {self.database}: indexes, constraints and triggers after "
                f"{time.monotonic() - self.started:.0f} s" + (f"; now {'; '.join(self.building)}" if self.building
                                                             else ""))


def _run_tool(cmd: list[str], *, what: str, progress: Progress | None = None, progress_conninfo: str | None = None,
              interval_s: float = PROGRESS_INTERVAL_S) -> None:
    """Run one client tool to its end, logging progress every ``interval_s``; fails with its stderr."""
    log.info("Running %s", " ".join(cmd))
    with tempfile.NamedTemporaryFile(prefix="pgmig-tool-", suffix=".err") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=_die_with_parent)
        monitor = _connect(progress_conninfo) if progress is not None and progress_conninfo else None
        try:
            next_line = time.monotonic() + interval_s
            while proc.poll() is None:
                time.sleep(0.2)
                if monitor is not None and progress is not None:
                    progress.sample(monitor)
                    if time.monotonic() >= next_line:
                        progress.log_fn(progress.line())
                        next_line = time.monotonic() + interval_s
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            if monitor is not None:
                monitor.close()
        err.flush()
        stderr = Path(err.name).read_text(errors="replace").strip()
    if proc.returncode != 0:
        raise LogicalLoadError(f"{what} failed (exit {proc.returncode}): {stderr}")
    if progress is not None and not isinstance(progress, IndexProgress):
        progress.seen |= set(progress.estimates)
        progress.active = {}
        progress.log_fn(progress.line())


# ---------------------------------------------------------------- the load

def load_database(*, source_conninfo: str, target_conninfo: str, target_admin_conninfo: str, database: str,
                  schemas: Sequence[str], slot_name: str, migration_id: str, control_schema: str, jobs: int = 2,
                  plugin: str = "pgoutput", dump_root: str | Path | None = None, wait_for_xacts_s: float = 300,
                  progress_interval_s: float = PROGRESS_INTERVAL_S,
                  log_fn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Load ``schemas`` of one source database into the target at a new slot's exported snapshot.

    ``source_conninfo`` and ``target_conninfo`` name the database on each side, ``target_admin_conninfo``
    another database of the target server (where the database is created). ``plugin`` is the slot's output
    plugin: pgoutput for native CDC, test_decoding for DMS. The dump is written to
    ``dump_directory_for(migration_id, database, dump_root)``. The slot waits at most ``wait_for_xacts_s``
    for the transactions open on the source (``max_transaction_age_seconds``), as ``create_slot`` does,
    before anything is created on the target. Returns the slot's
    ``consistent_point`` (where CDC starts), what was loaded and how long it took.
    """
    database = validate_identifier(database, field="database")
    schemas = validate_schemas(schemas)
    slots.validate_slot_name(slot_name)
    control_schema = validate_identifier(control_schema, field="control_schema")
    if plugin not in slots.PLUGINS.values():
        raise ValueError(f"plugin: expected one of {', '.join(slots.PLUGINS.values())}, got {plugin!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: expected a whole number >= 1, got {jobs!r}")
    say = log_fn or log.info
    with _connect(source_conninfo) as source, _connect(target_admin_conninfo) as admin:
        tools = tools_for(major_of(source), major_of(admin))
        state = target_state(admin, target_conninfo, database, control_schema, migration_id)
        if state["state"] == "loaded":
            marker = state["marker"]
            if source.execute(sqlfiles.load("logical_load_slot"), {"slot_name": slot_name}).fetchone() is None:
                raise LogicalLoadError(
                    f"database {database} on the target was loaded at {marker['consistent_point']}, but slot "
                    f"{slot_name} is gone from the source, so CDC cannot resume from there. Drop the target database "
                    "to load it again.")
            say(f"Database {database} was loaded already at {marker['consistent_point']}; nothing to do")
            return {**marker.get("stats", {}), "database": database, "slot_name": slot_name,
                    "consistent_point": marker["consistent_point"], "reused": True}
        if state["state"] == "not_empty":
            shown = ", ".join(state["contents"][:10]) + (" ..." if len(state["contents"]) > 10 else "")
            raise LogicalLoadError(
                f"database {database} on the target is not empty ({len(state['contents'])} objects: {shown}). A "
                "logical load needs a missing or empty database; drop it or choose another target. Nothing was "
                "changed.")
        created = state["state"] == "missing"
        if state["state"] == "loading":
            _discard_half_load(admin, target_conninfo, database, schemas, state["marker"], control_schema,
                               migration_id)
            created = state["marker"]["created_database"]
            if created:
                state["state"] = "missing"
        _drop_stale_slot(source, slot_name)
        slot_deadline = time.monotonic() + slots.wait_for_older_transactions(source, slot_name, wait_for_xacts_s)
        if state["state"] == "missing":
            _create_database(source, admin, database, say)
            copy_database_properties(source, admin, database, say)
        tables = [dict(zip(("schema", "table_name", "rows_estimate", "bytes"), row, strict=True))
                  for row in source.execute(sqlfiles.load("logical_load_tables"), {"schemas": schemas}).fetchall()]

    with _connect(target_conninfo) as target:
        create_control_schema(target, control_schema)
        target.execute(sqlfiles.compose("logical_load_marker_table", schema=control_schema))
        target.execute(sqlfiles.compose("logical_load_marker_start", schema=control_schema),
                       {"migration_id": migration_id, "slot_name": slot_name, "created_database": created})
        # The dump creates each schema it holds; a fresh database's empty public schema would clash.
        existing = target.execute(sqlfiles.load("logical_load_existing_schemas"), {"schemas": schemas}).fetchall()
        for (schema,) in existing:
            if schema != control_schema:
                target.execute(sqlfiles.compose("logical_load_drop_schema", schema=schema))

    folder = dump_directory_for(migration_id, database, dump_root)
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:  # the dump is a copy of the source's data: it goes when the load ends, whether it failed or not
        started = time.monotonic()
        with temporary_passfile(source_conninfo) as source_pass:
            replication = psycopg.connect(source_pass + " replication=database", autocommit=True)
            # A walsender takes no statement_timeout: transactions begun since the wait above are waited for
            # until the same deadline, then the creation is cancelled from here.
            timer = threading.Timer(max(slot_deadline - time.monotonic(), slots.MIN_CREATE_TIMEOUT_S),
                                    replication.cancel)
            timer.start()
            try:
                try:
                    row = replication.execute(sqlfiles.compose("logical_load_create_slot", slot_name=slot_name,
                                                               plugin=plugin)).fetchone()
                except psycopg.errors.QueryCanceled as exc:
                    raise slots.SlotError(
                        f"Slot {slot_name!r} was not created: waiting for transactions that began after the wait "
                        f"for older ones took longer than max_transaction_age_seconds ({wait_for_xacts_s:g} s). "
                        "Rerun in a quieter moment.") from exc
                finally:
                    timer.cancel()
                consistent_point, snapshot = row[1], row[2]
                say(f"Slot {slot_name} created at {consistent_point}; dumping {database} at snapshot {snapshot}")
                # The exported snapshot lives as long as this connection: it stays open until pg_dump is done.
                _run_tool([str(tools["pg_dump"]), "-d", source_pass, f"--snapshot={snapshot}", "-Fd", "-j", str(jobs),
                           "--compress=0", "--no-publications", "--no-subscriptions", "-f", str(folder),
                           *[f"--schema={s}" for s in schemas]],
                          what="pg_dump", progress=Progress("dump", database, tables, say,
                                                     datname=psycopg.conninfo.conninfo_to_dict(source_pass).get("dbname")),
                          progress_conninfo=source_pass, interval_s=progress_interval_s)
            finally:
                replication.close()
        dumped = time.monotonic()
        with temporary_passfile(target_conninfo) as target_pass:
            for section in ("pre-data", "data", "post-data"):
                parallel = ["-j", str(jobs)] if section != "pre-data" else []
                _run_tool([str(tools["pg_restore"]), "-d", target_pass, f"--section={section}", "--exit-on-error",
                           *parallel, str(folder)],
                          what=f"pg_restore --section={section}",
                          progress={"data": Progress("restore", database, tables, say),
                                    "post-data": IndexProgress(database, tables, say)}.get(section),
                          progress_conninfo=target_pass, interval_s=progress_interval_s)
                say(f"Restored {section} of {database}")
        finished = time.monotonic()
        total_bytes = sum(int(t["bytes"]) for t in tables)
        stats = {"tables": len(tables), "rows_estimate": sum(int(t["rows_estimate"]) for t in tables),
                 "bytes": total_bytes, "dump_seconds": round(dumped - started, 3),
                 "restore_seconds": round(finished - dumped, 3), "load_seconds": round(finished - started, 3),
                 "mb_per_second": round(total_bytes / 1e6 / max(finished - started, 1e-6), 3),
                 "created_database": created, "pg_dump": str(tools["pg_dump"]), "pg_restore": str(tools["pg_restore"])}
        with _connect(target_conninfo) as target:
            target.execute(sqlfiles.compose("logical_load_marker_done", schema=control_schema),
                           {"migration_id": migration_id, "consistent_point": consistent_point,
                            "stats": json.dumps(stats)})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    say(f"Loaded {database}: {stats['tables']} tables, {total_bytes / 1e6:.1f} MB in {stats['load_seconds']:.1f} s "
        f"({stats['mb_per_second']:.1f} MB/s); CDC starts at {consistent_point}")
    return {**stats, "database": database, "slot_name": slot_name, "consistent_point": consistent_point,
            "reused": False}


def default_jobs() -> int:
    """Parallel jobs for pg_dump/pg_restore: the machine's cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 2))


def preflight_findings(source_conn: psycopg.Connection, admin_conn: psycopg.Connection, target_conninfo: str, *,
                       database: str, schemas: Sequence[str], control_schema: str,
                       migration_id: str) -> list[Finding]:
    """Read-only checks of one database's logical load: versions, the target database, roles to create."""
    source_major, target_major = major_of(source_conn), major_of(admin_conn)
    found = []
    problem = version_problem(source_major, target_major)
    if problem:
        found.append(Finding("target server", problem, "Migrate to a target of the same or a newer major version."))
    state = target_state(admin_conn, target_conninfo, database, control_schema, migration_id)
    if state["state"] == "not_empty":
        shown = ", ".join(state["contents"][:10]) + (" ..." if len(state["contents"]) > 10 else "")
        found.append(Finding(f"target database {database}", f"is not empty: {shown}.",
                             "Drop it or name an empty target; the load creates a missing database itself."))
    elif state["state"] == "missing":
        found.append(Finding(f"target database {database}", "does not exist; the load will create it.",
                             "Nothing to do.", level="info"))
    roles = missing_roles(source_conn, admin_conn, schemas)
    if roles:
        found.append(Finding("target roles", f"will be created without passwords: {', '.join(roles)}.",
                             "Set their passwords on the target (ALTER ROLE ... PASSWORD) before the cutover.",
                             level="info"))
    return found


def analyze_schemas(conn: psycopg.Connection, schemas: Sequence[str]) -> int:
    """ANALYZE every table of ``schemas`` (a restore brings no planner statistics); returns how many."""
    tables = conn.execute(sqlfiles.load("logical_load_tables"), {"schemas": list(schemas)}).fetchall()
    for schema, table, *_ in tables:
        conn.execute(sqlfiles.compose("logical_load_analyze", table=pgsql.Identifier(schema, table)))
    return len(tables)
