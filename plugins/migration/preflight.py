"""Preflight: everything that would make the migration fail later, found before anything is created.

``run_preflight`` reads the source and returns findings; ``raise_for_failures`` turns all failing
findings into one ``PreflightError`` so the user fixes everything in one pass. Preflight changes
nothing, so a dry run changes nothing: what the migration would change on the source (the opted-in
``REPLICA IDENTITY FULL`` on tables without a key) is reported as an info finding and made after
``proceed`` by ``apply_source_changes``, which records each table's previous replica identity in the
source's control schema; ``restore_replica_identity`` puts it back after a completed cutover.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Literal

import psycopg
from psycopg.rows import dict_row

from migration import sql as sqlfiles
from migration.naming import validate_identifier, validate_schemas

log = logging.getLogger(__name__)

MIN_SERVER_VERSION_NUM = 110000
ENGINES = ("dms", "native")
# Settings every source needs; platform-specific ones (rds.logical_replication) come in through extra_settings.
REQUIRED_SETTINGS: Mapping[str, str] = {"wal_level": "logical"}

Level = Literal["fail", "warn", "info"]


@dataclass(frozen=True)
class Finding:
    """One preflight result: what, what is wrong (or what was done), and what to do about it."""

    object: str
    problem: str
    fix: str
    level: Level = "fail"

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    def __str__(self) -> str:
        return f"[{self.level}] {self.object}: {self.problem} Fix: {self.fix}"


class PreflightError(RuntimeError):
    """Raised once with every failing finding, so one run shows all that must be fixed."""

    def __init__(self, failures: Sequence[Finding]):
        self.failures = list(failures)
        lines = "\n".join(f"- {f.object}: {f.problem} Fix: {f.fix}" for f in self.failures)
        super().__init__(f"Preflight found {len(self.failures)} problem(s) on the source:\n{lines}")


def _validate_inputs(schemas: object, engine: object, slots_needed: object, max_xact_age_s: object,
                     extra_settings: object) -> list[str]:
    names = validate_schemas(schemas)
    if engine not in ENGINES:
        raise ValueError(f"engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
    for field, value in (("slots_needed", slots_needed), ("max_xact_age_s", max_xact_age_s)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{field}: expected a whole number >= 0, got {value!r}")
    if extra_settings is not None and not (
        isinstance(extra_settings, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in extra_settings.items())
    ):
        raise ValueError(f"extra_settings: expected a mapping of setting name to value, got {extra_settings!r}")
    return names


def run_preflight(
    conn: psycopg.Connection,
    *,
    schemas: Sequence[str],
    engine: str,
    slots_needed: int,
    max_xact_age_s: int,
    allow_replica_identity_full: bool,
    extra_settings: Mapping[str, str] | None = None,
    slot_names: Sequence[str] = (),
    exclude_schemas: Sequence[str] = (),
    control_schema: str | None = None,
    logical_replication_set_later: bool = False,
    logical_load: bool = False,
) -> list[Finding]:
    """Check the source database ``conn`` is connected to; return every finding (fail, warn, info).

    Read-only: it runs in a read-only transaction, so it cannot change the source.
    ``extra_settings`` adds required settings (name -> value) to ``wal_level=logical``.
    ``slot_names`` are the migration's own slots: when they already exist (a rerun) they need no new room.
    Every user schema with tables must be migrated (``schemas``), excluded (``exclude_schemas``) or the
    ``control_schema``. ``logical_replication_set_later``: a later task sets logical replication
    (AWS ``set_logical_replication``), so a wrong ``wal_level`` is reported, not failed.
    ``logical_load`` (``initial_load: pg_dump``): only the migrated schemas reach the target, so a schema
    left out is reported, not failed.
    """
    names = _validate_inputs(schemas, engine, slots_needed, max_xact_age_s, extra_settings)
    excluded = validate_schemas(list(exclude_schemas), field="exclude_schemas") if exclude_schemas else []
    if control_schema is not None:
        validate_identifier(control_schema, field="control_schema")
    findings: list[Finding] = []
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sqlfiles.load("preflight_read_only"))
        facts = cur.execute(sqlfiles.load("preflight_server_facts"), {"slot_names": list(slot_names)}).fetchone()
        findings += _server_findings(facts, slots_needed)
        settings = _settings_findings(cur, {**REQUIRED_SETTINGS, **(extra_settings or {})})
        if logical_replication_set_later:
            settings = [replace(f, level="info", problem=f"{f.problem} After proceed, set_logical_replication sets "
                                "rds.logical_replication=1 and reboots the writer.", fix="Nothing to do.")
                        if f.object == "setting wal_level" else f for f in settings]
        findings += settings
        missing = [r["name"] for r in cur.execute(sqlfiles.load("preflight_missing_schemas"), {"schemas": names})]
        findings += [
            Finding(f"schema {name!r}", "does not exist in this database.",
                    "Correct the schema list, or connect to the database that holds it.")
            for name in missing
        ]
        accounted = [*names, *excluded, *([control_schema] if control_schema else [])]
        left_out = cur.execute(sqlfiles.load("preflight_left_out_schemas"), {"accounted": accounted}).fetchall()
        findings += [
            Finding(f"schema {r['name']!r}", f"has {r['tables']} table(s) and is not migrated: the logical load "
                    "leaves it out of the target.", "Nothing to do, unless it should be migrated too.", level="info")
            if logical_load else
            Finding(f"schema {r['name']!r}",
                    f"has {r['tables']} table(s) but is neither migrated nor excluded: the target is a clone of the "
                    "whole database, so changes made in it after the clone point would be left behind.",
                    "Add it to the migration's schemas (and to this run's), or list it under exclude_schemas in the "
                    "YAML if its changes after the clone point may be lost.")
            for r in left_out
        ]
        params = {"schemas": names}
        findings += _identity_findings(cur, params, engine, allow_replica_identity_full)
        findings += _transaction_findings(cur, max_xact_age_s, facts)
        findings += [
            Finding(f"table {r['qualified']}",
                    "is UNLOGGED: a clone or snapshot restores it empty and CDC never carries its changes.",
                    f"ALTER TABLE {r['qualified']} SET LOGGED; or leave it out of the migration.")
            for r in cur.execute(sqlfiles.load("preflight_unlogged_tables"), params)
        ]
        findings += _large_object_findings(cur, params, facts)
        findings += [
            Finding(f"table {r['qualified']}", f"role {facts['role_name']!r} has no SELECT on it.",
                    f"GRANT SELECT ON {r['qualified']} TO <migration role>; (as the table owner).")
            for r in cur.execute(sqlfiles.load("preflight_tables_without_select"), params)
        ]
    for finding in findings:
        (log.warning if finding.level == "fail" else log.info)("preflight: %s", finding)
    return findings


def raise_for_failures(findings: Sequence[Finding]) -> list[Finding]:
    """Raise one PreflightError listing every failing finding; otherwise return the others (warn, info)."""
    failures = [f for f in findings if f.level == "fail"]
    if failures:
        raise PreflightError(failures)
    return [f for f in findings if f.level != "fail"]


def _server_findings(facts: dict, slots_needed: int) -> list[Finding]:
    found: list[Finding] = []
    if facts["version_num"] < MIN_SERVER_VERSION_NUM:
        found.append(Finding("server",
                             f"runs PostgreSQL {facts['version']}; logical CDC from a clone needs 11 or later.",
                             "Upgrade the source to PostgreSQL 11 or later (latest minor) before migrating."))
    privileged = facts["is_superuser"] or facts["is_rds_privileged"] or facts["has_replication"]
    if not privileged:
        found.append(Finding(f"role {facts['role_name']!r}",
                             "is neither superuser nor a member of rds_superuser/rds_replication and has no "
                             "REPLICATION attribute, so it cannot create or read replication slots.",
                             "Use the instance's primary user, or GRANT rds_replication TO <role>; (RDS/Aurora), or "
                             "ALTER ROLE <role> REPLICATION; (self-managed)."))
    free_slots = facts["max_replication_slots"] - facts["used_replication_slots"] + facts["own_existing_slots"]
    if free_slots < slots_needed:
        found.append(Finding("max_replication_slots",
                             f"{facts['max_replication_slots']} configured, {facts['used_replication_slots']} in use: "
                             f"{free_slots} free, {slots_needed} needed.",
                             "Raise max_replication_slots (restart required) or drop unused slots with SELECT "
                             "pg_drop_replication_slot('<name>');"))
    free_senders = facts["max_wal_senders"] - facts["used_wal_senders"]
    if free_senders < slots_needed:
        found.append(Finding("max_wal_senders",
                             f"{facts['max_wal_senders']} configured, {facts['used_wal_senders']} in use: "
                             f"{free_senders} free, {slots_needed} needed.",
                             "Raise max_wal_senders (restart required) or stop idle replication connections."))
    return found


def _settings_findings(cur: psycopg.Cursor, wanted: Mapping[str, str]) -> list[Finding]:
    found = []
    for row in cur.execute(sqlfiles.load("preflight_settings"), {"names": list(wanted)}):
        expected = wanted[row["name"]]
        if row["value"] is None:
            found.append(Finding(f"setting {row['name']}", f"is not known to this server; it must be {expected!r}.",
                                 f"Set {row['name']} = {expected} in the parameter group / postgresql.conf and "
                                 "restart."))
        elif row["value"].lower() != expected.lower():
            found.append(Finding(f"setting {row['name']}", f"is {row['value']!r}; it must be {expected!r}.",
                                 f"Set {row['name']} = {expected} (RDS/Aurora: rds.logical_replication = 1 in the "
                                 "custom parameter group) and reboot."))
    return found


def _identity_findings(cur: psycopg.Cursor, params: dict, engine: str, allow_full: bool) -> list[Finding]:
    found = []
    consequence = ("UPDATE and DELETE on it are skipped by DMS" if engine == "dms"
                   else "UPDATE and DELETE on it fail on the source once it is published")
    for row in cur.execute(sqlfiles.load("preflight_tables_without_identity"), params).fetchall():
        what = f"table {row['qualified']}"
        if allow_full and not row["is_owner"]:
            found.append(Finding(what, f"has no primary key or replica identity, and role {row['role_name']!r} does "
                                       "not own it, so REPLICA IDENTITY FULL cannot be set.",
                                 f"As the table owner: ALTER TABLE {row['qualified']} REPLICA IDENTITY FULL;"))
        elif allow_full:
            found.append(Finding(what, "has no primary key or replica identity: after proceed, apply_source_changes "
                                       "sets REPLICA IDENTITY FULL (a brief ACCESS EXCLUSIVE lock, bounded by "
                                       "lock_timeout); cleanup restores the previous setting after the cutover.",
                                 "Nothing to do; a primary key would make CDC on this table cheaper.", level="info"))
        else:
            found.append(Finding(what, f"has no primary key or usable replica identity: {consequence}.",
                                 f"Add a primary key, or ALTER TABLE {row['qualified']} REPLICA IDENTITY FULL; "
                                 "(or rerun with allow_replica_identity_full)."))
    return found


def _transaction_findings(cur: psycopg.Cursor, max_age_s: int, facts: dict) -> list[Finding]:
    found = []
    for r in cur.execute(sqlfiles.load("preflight_long_transactions"), {"max_age_s": max_age_s}):
        found.append(Finding(
            f"transaction of pid {r['pid']} (database {r['datname']!r}, user {r['usename']!r}, application "
            f"{r['application_name']!r})",
            f"has been open {r['age_s']} s ({r['state']}), longer than {max_age_s} s: slot creation waits for it and "
            "the clone would miss it.",
            f"Commit or roll it back, or end it with SELECT pg_terminate_backend({r['pid']});"))
    for r in cur.execute(sqlfiles.load("preflight_prepared_transactions")):
        found.append(Finding(
            f"prepared transaction {r['gid']!r} (database {r['database']!r}, owner {r['owner']!r})",
            f"has been prepared for {r['age_s']} s: it blocks slot creation until it is resolved.",
            f"In database {r['database']!r}: COMMIT PREPARED '{r['gid']}'; or ROLLBACK PREPARED '{r['gid']}';"))
    if not facts["sees_all_sessions"]:
        found.append(Finding(f"role {facts['role_name']!r}",
                             "cannot see other roles' sessions, so long transactions of other roles were not checked.",
                             "GRANT pg_read_all_stats TO <role>; to check them too.", level="warn"))
    return found


def _large_object_findings(cur: psycopg.Cursor, params: dict, facts: dict) -> list[Finding]:
    found = []
    if facts["large_objects"]:
        found.append(Finding("pg_largeobject_metadata",
                             f"holds {facts['large_objects']} large object(s); logical decoding never carries large "
                             "objects.",
                             "Move them into bytea columns before migrating, or copy them separately at cutover."))
    for r in cur.execute(sqlfiles.load("preflight_large_object_columns"), params):
        found.append(Finding(
            f"column {r['qualified_column']}",
            f"has type {r['type_name']}, which refers to large objects that CDC does not carry.",
            "Migrate the data to bytea, or confirm the column holds plain numbers.",
            level="fail" if facts["large_objects"] else "warn"))
    return found


# ---------------------------------------------------------------------------------------------
# Source changes after proceed, and their undo after a completed cutover
# ---------------------------------------------------------------------------------------------

IDENTITY_NAMES = {"d": "DEFAULT", "n": "NOTHING", "i": "USING INDEX", "f": "FULL"}


def _ensure_identity_table(conn: psycopg.Connection, control_schema: str) -> None:
    for name in ("target_prep_create_schema", "preflight_replica_identity_table"):
        try:
            conn.execute(sqlfiles.compose(name, schema=control_schema))
        except psycopg.errors.UniqueViolation:
            pass  # created by a concurrent task between its check and its insert


def apply_source_changes(conn: psycopg.Connection, *, schemas: Sequence[str], control_schema: str,
                         allow_replica_identity_full: bool, lock_timeout_ms: int = 5000) -> list[dict[str, str]]:
    """Set REPLICA IDENTITY FULL on the migrated tables that have no usable key (when allowed).

    Each table's previous replica identity is recorded in ``<control_schema>.replica_identity_changes``
    in the same transaction as its ALTER, which waits at most ``lock_timeout_ms`` for its lock. A rerun
    finds nothing left to change and keeps the first record. Returns every recorded change not yet
    restored: ``{table, previous, now}``.
    """
    names = validate_schemas(schemas)
    validate_identifier(control_schema, field="control_schema")
    if isinstance(lock_timeout_ms, bool) or not isinstance(lock_timeout_ms, int) or lock_timeout_ms < 1:
        raise ValueError(f"lock_timeout_ms: expected a whole number >= 1, got {lock_timeout_ms!r}")
    if not allow_replica_identity_full:
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        pending = cur.execute(sqlfiles.load("preflight_tables_without_identity"), {"schemas": names}).fetchall()
    if pending:
        _ensure_identity_table(conn, control_schema)
    for row in pending:
        with conn.transaction():
            conn.execute(sqlfiles.load("preflight_lock_timeout"), {"timeout": f"{lock_timeout_ms}ms"})
            conn.execute(sqlfiles.compose("preflight_replica_identity_record", schema=control_schema),
                         {"schema_name": row["schema_name"], "table_name": row["table_name"],
                          "previous": row["replident"]})
            try:
                conn.execute(sqlfiles.compose("preflight_set_replica_identity_full",
                                              schema=row["schema_name"], table=row["table_name"]))
            except psycopg.errors.LockNotAvailable:
                raise RuntimeError(
                    f"table {row['qualified']}: REPLICA IDENTITY FULL was not set: its lock was not granted within "
                    f"{lock_timeout_ms} ms (a long transaction holds it). Nothing was changed on it; rerun the task "
                    "when the transaction has ended.") from None
        log.info("Set REPLICA IDENTITY FULL on %s (was %s)", row["qualified"], IDENTITY_NAMES[row["replident"]])
    return recorded_changes(conn, control_schema)


def recorded_changes(conn: psycopg.Connection, control_schema: str) -> list[dict[str, str]]:
    """The replica identity changes recorded in this database and not yet restored."""
    validate_identifier(control_schema, field="control_schema")
    with conn.cursor(row_factory=dict_row) as cur:
        if not cur.execute(sqlfiles.load("preflight_replica_identity_table_exists"),
                           {"schema": control_schema}).fetchone()["present"]:
            return []
        rows = cur.execute(sqlfiles.compose("preflight_replica_identity_pending", schema=control_schema), {}).fetchall()
    return [{"table": r["qualified"], "previous": IDENTITY_NAMES.get(r["previous"], r["previous"]), "now": "FULL"}
            for r in rows]


def restore_replica_identity(conn: psycopg.Connection, *, control_schema: str,
                             lock_timeout_ms: int = 5000) -> list[str]:
    """Put back every replica identity ``apply_source_changes`` recorded and has not restored yet.

    A table whose replica identity is no longer FULL was changed by someone since: it is left as it
    is and its record is closed. A table whose lock is not granted within ``lock_timeout_ms`` keeps its
    record, so a rerun restores it. Returns one line per table.
    """
    validate_identifier(control_schema, field="control_schema")
    lines: list[str] = []
    with conn.cursor(row_factory=dict_row) as cur:
        if not cur.execute(sqlfiles.load("preflight_replica_identity_table_exists"),
                           {"schema": control_schema}).fetchone()["present"]:
            return lines
        rows = cur.execute(sqlfiles.compose("preflight_replica_identity_pending", schema=control_schema), {}).fetchall()
    for row in rows:
        target = {"schema": row["schema_name"], "table": row["table_name"]}
        key = {"schema_name": row["schema_name"], "table_name": row["table_name"]}
        previous = IDENTITY_NAMES.get(row["previous"], row["previous"])
        try:
            with conn.transaction():
                conn.execute(sqlfiles.load("preflight_lock_timeout"), {"timeout": f"{lock_timeout_ms}ms"})
                if row["current"] is None:
                    line = f"table {row['qualified']} no longer exists; nothing to restore"
                elif row["current"] != "f":
                    line = f"left replica identity of {row['qualified']} as it is (changed since the migration set it)"
                elif row["previous"] == "d":
                    conn.execute(sqlfiles.compose("preflight_restore_replica_identity_default", **target))
                    line = f"restored REPLICA IDENTITY DEFAULT on {row['qualified']}"
                else:
                    # NOTHING, or an index identity whose index was gone: both replicate no old key.
                    conn.execute(sqlfiles.compose("preflight_restore_replica_identity_nothing", **target))
                    line = f"restored REPLICA IDENTITY NOTHING on {row['qualified']}"
                    if row["previous"] == "i":
                        line += " (it was USING INDEX with the index gone, which replicates no key either)"
                conn.execute(sqlfiles.compose("preflight_replica_identity_restored", schema=control_schema), key)
        except psycopg.errors.LockNotAvailable:
            line = (f"could not restore REPLICA IDENTITY {previous} on {row['qualified']}: its lock was not granted "
                    f"within {lock_timeout_ms} ms; rerun cleanup, or ALTER TABLE {row['qualified']} REPLICA "
                    f"IDENTITY {previous};")
            log.warning(line)
        lines.append(line)
    return lines
