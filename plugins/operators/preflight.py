"""Preflight operator: fail fast, listing every problem on the source, before anything is created."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from hooks.postgres import connect
from migration.preflight import raise_for_failures, run_preflight


class PreflightOperator(BaseOperator):
    """Check one source database: version and settings, keys/replica identity, long and prepared
    transactions, unlogged tables, large objects, privileges and slot/WAL-sender headroom.

    Raises one PreflightError listing all failures, each with its fix. Creates nothing, except
    REPLICA IDENTITY FULL on keyless tables when ``allow_replica_identity_full`` is set.
    Returns the non-failing findings (warnings, and what was changed) as a list of dicts.
    """

    template_fields: Sequence[str] = ("source_conn_id", "database", "schemas", "engine", "slot_names")
    ui_color = "#f4cccc"

    def __init__(self, *, source_conn_id: str, database: str, schemas: Sequence[str], engine: str,
                 slots_needed: int = 1, max_xact_age_s: int = 300, allow_replica_identity_full: bool = False,
                 extra_settings: Mapping[str, str] | None = None, slot_names: Sequence[str] = (), **kwargs: Any):
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.database = database
        self.schemas = schemas
        self.engine = engine
        self.slots_needed = slots_needed
        self.max_xact_age_s = max_xact_age_s
        self.allow_replica_identity_full = allow_replica_identity_full
        self.extra_settings = extra_settings
        self.slot_names = slot_names

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
            )
        return [finding.as_dict() for finding in raise_for_failures(findings)]
