"""The cutover's critical section as one task, and the manual undo of its write fence."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from functools import partial
from typing import Any

from airflow.sdk import BaseOperator, Context

from hooks.postgres import connect
from migration import naming, sequences, target_prep
from migration.cutover import (
    CutoverAborted,
    LocalTargetOpener,
    NativeCdc,
    NativeLink,
    RoleFence,
    SourceDrain,
    run_cutover,
    unblock_writes,
)
from operators.replication_slot import endpoint_override


def _sync_sequences(source_conn: Any, target_conn: Any, schemas: list[str]) -> int:
    # Read inside the window: with writes blocked the source's values are final.
    return sequences.sync_sequences(target_conn, sequences.read_sequences(source_conn, schemas))


class CutoverOperator(BaseOperator):
    """Block source writes, drain, stop native CDC, sync sequences, enable triggers, open the target.

    One task so the write-blocked window holds no scheduling gaps. Writes are fenced by roles
    (``application_roles``, or every login role but the replication role, the role running the
    cutover and ``exclude_roles``), recorded in ``<control_schema>.cutover_state`` on the source's
    ``control_database``. Any failure before the target opens restores source writes exactly and
    fails the task naming the step (the timeline is pushed to XCom under ``timeline``).
    Returns the timeline: ``{status, writes_blocked_at, target_open_at, write_blocked_seconds,
    final_lsn, durations, steps, ...}``.
    """

    template_fields: Sequence[str] = ("source_conn_id", "target_conn_id", "databases", "schemas",
                                      "application_roles", "exclude_roles", "replication_role", "control_database",
                                      "target_host", "target_port")
    ui_color = "#f4cccc"

    def __init__(self, *, migration_id: str, source_conn_id: str, target_conn_id: str, databases: Sequence[str],
                 schemas: Sequence[str], replication_role: str, control_schema: str = "migration_control",
                 application_roles: Sequence[str] | None = None, exclude_roles: Sequence[str] = (),
                 control_database: str | None = None, target_host: str | None = None,
                 target_port: int | str | None = None, slot_names: dict[str, str] | None = None,
                 subscriptions: dict[str, str] | None = None, drain_timeout_seconds: float = 60,
                 apply_timeout_seconds: float | None = None, sync_sequences: bool = True,
                 enable_triggers: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        self.migration_id = migration_id
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.databases = databases
        self.schemas = schemas
        self.replication_role = replication_role
        self.control_schema = control_schema
        self.application_roles = application_roles
        self.exclude_roles = exclude_roles
        self.control_database = control_database
        self.target_host = target_host
        self.target_port = target_port
        self.slot_names = slot_names or {}
        self.subscriptions = subscriptions or {}
        self.drain_timeout_seconds = drain_timeout_seconds
        self.apply_timeout_seconds = apply_timeout_seconds
        self.sync_sequences = sync_sequences
        self.enable_triggers = enable_triggers

    def execute(self, context: Context) -> dict[str, Any]:
        databases = list(self.databases)
        schemas = list(self.schemas)
        if not databases:
            raise ValueError("databases: at least one database is required")
        host, port = endpoint_override(self.target_host, self.target_port)
        control_db = self.control_database or databases[0]
        fence_id = self.migration_id
        with ExitStack() as stack:
            # Every connection is open before writes are blocked: the fence revokes CONNECT.
            control = stack.enter_context(connect(self.source_conn_id, dbname=control_db))
            sources = {db: control if db == control_db else stack.enter_context(connect(self.source_conn_id, dbname=db))
                       for db in databases}
            targets = {db: stack.enter_context(connect(self.target_conn_id, dbname=db, host=host, port=port))
                       for db in databases}
            fence = RoleFence(conn=control, fence_id=fence_id, databases=databases, control_schema=self.control_schema,
                              replication_role=self.replication_role, roles=list(self.application_roles or []) or None,
                              exclude_roles=list(self.exclude_roles or []))
            drain = SourceDrain(conn=control, databases=databases, control_schema=self.control_schema,
                                fence_id=fence_id, allowed_roles=[self.replication_role])
            cdc = NativeCdc(source_conn=control, links=[
                NativeLink(db, self.slot_names.get(db) or naming.slot_name(self.migration_id, db),
                           self.subscriptions.get(db) or naming.subscription_name(self.migration_id, db), targets[db])
                for db in databases])
            opener = LocalTargetOpener(conn=control, control_schema=self.control_schema, fence_id=fence_id,
                                       endpoint={"conn_id": self.target_conn_id, "host": host, "port": port,
                                                 "databases": databases})
            steps = []
            if self.sync_sequences:
                steps += [(f"sync_sequences[{db}]", partial(_sync_sequences, sources[db], targets[db], schemas))
                          for db in databases]
            if self.enable_triggers:
                for db in databases:
                    ddl = target_prep.saved_trigger_ddl(targets[db], self.control_schema)
                    if ddl:
                        steps.append((f"enable_triggers[{db}]", partial(target_prep.enable_triggers, targets[db], ddl)))
            try:
                timeline = run_cutover(fence=fence, drain=drain, cdc=cdc, opener=opener, after_stop=steps,
                                       drain_timeout_s=float(self.drain_timeout_seconds),
                                       apply_timeout_s=float(self.apply_timeout_seconds)
                                       if self.apply_timeout_seconds else None)
            except CutoverAborted as exc:
                context["ti"].xcom_push(key="timeline", value=exc.timeline)
                raise
        self.log.info("Cutover done: writes blocked for %.3f s", timeline["write_blocked_seconds"])
        return timeline


class UnblockSourceWritesOperator(BaseOperator):
    """Restore exactly what the cutover's write fence changed on the source (manual recovery, rejected runs).

    Safe to run any time: with nothing fenced it changes nothing. Returns ``{fence_id, restored}``.
    """

    template_fields: Sequence[str] = ("source_conn_id", "control_database")
    ui_color = "#d9ead3"

    def __init__(self, *, migration_id: str, source_conn_id: str, control_database: str,
                 control_schema: str = "migration_control", **kwargs: Any):
        super().__init__(**kwargs)
        self.migration_id = migration_id
        self.source_conn_id = source_conn_id
        self.control_database = control_database
        self.control_schema = control_schema

    def execute(self, context: Context) -> dict[str, Any]:
        with connect(self.source_conn_id, dbname=self.control_database) as conn:
            return unblock_writes(conn, self.control_schema, self.migration_id)
