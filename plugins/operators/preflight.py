"""Preflight (read-only, before ``proceed``) and the source changes it plans (after ``proceed``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from connections.postgres import connect
from migration.preflight import apply_source_changes, raise_for_failures, run_preflight


class PreflightOperator(BaseOperator):
    """Check one source database: version and settings, keys/replica identity, long and prepared
    transactions, unlogged tables, large objects, privileges, slot/WAL-sender headroom, and user
    schemas with tables that are neither migrated nor excluded (the target is a whole-database clone).

    Raises one PreflightError listing all failures, each with its fix. Changes nothing (it reads in
    a read-only transaction): what the migration will change later, such as REPLICA IDENTITY FULL on
    keyless tables with ``allow_replica_identity_full``, is reported as an info finding.
    Returns the non-failing findings (warnings, and what would be changed) as a list of dicts.
    """

    template_fields: Sequence[str] = ("source_conn_id", "database", "schemas", "engine", "slot_names")
    ui_color = "#f4cccc"

    def __init__(self, *, source_conn_id: str, database: str, schemas: Sequence[str], engine: str,
                 slots_needed: int = 1, max_xact_age_s: int = 300, allow_replica_identity_full: bool = False,
                 extra_settings: Mapping[str, str] | None = None, slot_names: Sequence[str] = (),
                 exclude_schemas: Sequence[str] = (), control_schema: str | None = None,
                 logical_replication_set_later: bool = False, logical_load: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.logical_load = logical_load
        self.source_conn_id = source_conn_id
        self.database = database
        self.schemas = schemas
        self.engine = engine
        self.slots_needed = slots_needed
        self.max_xact_age_s = max_xact_age_s
        self.allow_replica_identity_full = allow_replica_identity_full
        self.extra_settings = extra_settings
        self.slot_names = slot_names
        self.exclude_schemas = exclude_schemas
        self.control_schema = control_schema
        self.logical_replication_set_later = logical_replication_set_later

    def execute(self, context: Context) -> list[dict[str, str]]:
        with connect(self.source_conn_id, dbname=self.database) as conn:
            findings = run_preflight(
                conn,
                schemas=self.schemas,
                engine=self.engine,
                slots_needed=self.slots_needed,
                max_xact_age_s=self.max_xact_age_s,
                allow_replica_identity_full=self.allow_replica_identity_full,
                extra_settings=self.extra_settings,
                slot_names=list(self.slot_names or ()),
                exclude_schemas=list(self.exclude_schemas or ()),
                control_schema=self.control_schema,
                logical_replication_set_later=self.logical_replication_set_later,
                logical_load=self.logical_load,
            )
        return [finding.as_dict() for finding in raise_for_failures(findings)]


class ApplySourceChangesOperator(BaseOperator):
    """After ``proceed``: make the source changes preflight reported, in one source database.

    With ``allow_replica_identity_full``, sets REPLICA IDENTITY FULL on migrated tables without a
    usable key, each under ``lock_timeout_ms``, recording the previous replica identity in the
    source's control schema first (cleanup restores it after a completed cutover). Safe to rerun.
    Returns ``{database, changes: [{table, previous, now}]}`` for the report.
    """

    template_fields: Sequence[str] = ("source_conn_id", "database", "schemas")
    ui_color = "#fff2cc"

    def __init__(self, *, source_conn_id: str, database: str, schemas: Sequence[str], control_schema: str,
                 allow_replica_identity_full: bool = False, lock_timeout_ms: int = 5000, **kwargs: Any):
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.database = database
        self.schemas = schemas
        self.control_schema = control_schema
        self.allow_replica_identity_full = allow_replica_identity_full
        self.lock_timeout_ms = lock_timeout_ms

    def execute(self, context: Context) -> dict[str, Any]:
        with connect(self.source_conn_id, dbname=self.database) as conn:
            changes = apply_source_changes(conn, schemas=list(self.schemas), control_schema=self.control_schema,
                                           allow_replica_identity_full=self.allow_replica_identity_full,
                                           lock_timeout_ms=self.lock_timeout_ms)
        for change in changes:
            self.log.info("%s: replica identity %s (was %s)", change["table"], change["now"], change["previous"])
        return {"database": self.database, "changes": changes}
