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
                                      "target_host", "target_port", "keep_security_group_ids", "dms_tasks",
                                      "replication_instance_id")
    ui_color = "#f4cccc"

    def __init__(self, *, migration_id: str, source_conn_id: str, target_conn_id: str, databases: Sequence[str],
                 schemas: Sequence[str], replication_role: str, control_schema: str = "migration_control",
                 application_roles: Sequence[str] | None = None, exclude_roles: Sequence[str] = (),
                 control_database: str | None = None, target_host: str | None = None,
                 target_port: int | str | None = None, slot_names: dict[str, str] | None = None,
                 subscriptions: dict[str, str] | None = None, drain_timeout_seconds: float = 60,
                 apply_timeout_seconds: float | None = None, sync_sequences: bool = True,
                 enable_triggers: bool = True, write_block: str = "roles", source_aws_conn_id: str | None = None,
                 security_group_ids: Sequence[str] = (), keep_security_group_ids: Sequence[str] = (),
                 keep_cidrs: Sequence[str] = (), cdc_engine: str = "native", target_aws_conn_id: str | None = None,
                 dms_tasks: Any = None, replication_instance_id: str | None = None,
                 dns_zone_id: str | None = None, dns_record_name: str | None = None, dns_ttl: int = 30,
                 **kwargs: Any):
        super().__init__(**kwargs)
        if write_block not in ("roles", "security_group"):
            raise ValueError(f"write_block: expected roles or security_group, got {write_block!r}")
        if cdc_engine not in ("native", "dms"):
            raise ValueError(f"cdc_engine: expected native or dms, got {cdc_engine!r}")
        self.write_block = write_block
        self.source_aws_conn_id = source_aws_conn_id
        self.security_group_ids = security_group_ids
        self.keep_security_group_ids = keep_security_group_ids
        self.keep_cidrs = keep_cidrs
        self.cdc_engine = cdc_engine
        self.target_aws_conn_id = target_aws_conn_id
        self.dms_tasks = dms_tasks
        self.replication_instance_id = replication_instance_id
        self.dns_zone_id = dns_zone_id
        self.dns_record_name = dns_record_name
        self.dns_ttl = dns_ttl
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
            fence = self._fence(context, control, databases)
            drain = SourceDrain(conn=control, databases=databases, control_schema=self.control_schema,
                                fence_id=fence_id, allowed_roles=[self.replication_role])
            cdc = self._cdc(stack, control, databases, targets)
            opener = self._opener(control, host, port, databases)
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

    def _fence(self, context: Context, control: Any, databases: list[str]) -> Any:
        if self.write_block == "roles":
            return RoleFence(conn=control, fence_id=self.migration_id, databases=databases,
                             control_schema=self.control_schema, replication_role=self.replication_role,
                             roles=list(self.application_roles or []) or None,
                             exclude_roles=list(self.exclude_roles or []))
        from hooks.aws import aws_client
        from migration.aws import SecurityGroupWriteBlock

        def persist(record: list[dict[str, Any]]) -> None:
            # Saved before any rule is revoked, so the teardown can put them back even after a lost worker.
            context["ti"].xcom_push(key="revoked", value=record)

        return SecurityGroupWriteBlock(
            ec2=aws_client(self.source_aws_conn_id, "ec2"), security_group_ids=list(self.security_group_ids),
            keep_security_group_ids=[g for g in list(self.keep_security_group_ids or []) if g],
            keep_cidrs=list(self.keep_cidrs or []), persist=persist)

    def _cdc(self, stack: ExitStack, control: Any, databases: list[str], targets: dict[str, Any]) -> Any:
        if self.cdc_engine == "native":
            return NativeCdc(source_conn=control, links=[
                NativeLink(db, self.slot_names.get(db) or naming.slot_name(self.migration_id, db),
                           self.subscriptions.get(db) or naming.subscription_name(self.migration_id, db), targets[db])
                for db in databases])
        from hooks.aws import aws_client
        from migration.dms import DmsCdcEngine, find_task

        # dms_tasks: the run's plan ({database, slot_name, dms_task_id}); task ARNs are looked up by identifier.
        client = aws_client(self.target_aws_conn_id, "dms")
        tasks = []
        for item in list(self.dms_tasks or []):
            if item["database"] not in databases:
                continue
            found = find_task(client, item["dms_task_id"])
            if not found:
                raise ValueError(f"dms_tasks: no DMS task {item['dms_task_id']} for database {item['database']}")
            tasks.append({"database": item["database"], "slot_name": item["slot_name"],
                          "replication_task_arn": found["ReplicationTaskArn"]})
        engine = DmsCdcEngine.from_connections(
            aws_conn_id=self.target_aws_conn_id, source_conn_id=self.source_conn_id, tasks=tasks,
            replication_instance_id=self.replication_instance_id or None, marker_schema=self.control_schema)
        stack.callback(engine.close)
        return engine

    def _opener(self, control: Any, host: str | None, port: int | None, databases: list[str]) -> Any:
        # The note in cutover_state is what keeps the teardown from lifting the fence once the target is open.
        local = LocalTargetOpener(conn=control, control_schema=self.control_schema, fence_id=self.migration_id,
                                  endpoint={"conn_id": self.target_conn_id, "host": host, "port": port,
                                            "databases": databases})
        if not self.dns_zone_id:
            return local
        from hooks.aws import aws_client
        from migration.aws import Route53TargetOpener

        return _OpenBoth(dns=Route53TargetOpener(route53=aws_client(self.target_aws_conn_id, "route53"),
                                                 hosted_zone_id=self.dns_zone_id, record_name=self.dns_record_name,
                                                 target_host=host, ttl=self.dns_ttl), note=local)


class _OpenBoth:
    """Switch DNS, then record that the target is open."""

    name = "dns"

    def __init__(self, *, dns: Any, note: LocalTargetOpener):
        self.dns, self.note = dns, note

    def open(self) -> dict[str, Any]:
        change = self.dns.open()
        self.note.endpoint = {**self.note.endpoint, "dns": change}
        self.note.open()
        return change


class UnblockSourceWritesOperator(BaseOperator):
    """Restore exactly what the cutover's write fence changed on the source.

    Runs as the teardown of the critical section. With ``roles`` it undoes what
    ``<control_schema>.cutover_state`` records; with ``security_group`` it puts back the inbound rules
    the cutover saved in its XCom before revoking them. Once the target is open it changes nothing,
    and with nothing fenced it changes nothing. Returns ``{restored, ...}``.
    """

    template_fields: Sequence[str] = ("source_conn_id", "control_database", "source_aws_conn_id")
    ui_color = "#d9ead3"

    def __init__(self, *, migration_id: str, source_conn_id: str, control_database: str,
                 control_schema: str = "migration_control", write_block: str = "roles",
                 source_aws_conn_id: str | None = None, cutover_task_id: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.migration_id = migration_id
        self.source_conn_id = source_conn_id
        self.control_database = control_database
        self.control_schema = control_schema
        self.write_block = write_block
        self.source_aws_conn_id = source_aws_conn_id
        self.cutover_task_id = cutover_task_id

    def execute(self, context: Context) -> dict[str, Any]:
        if self.write_block == "roles":
            with connect(self.source_conn_id, dbname=self.control_database) as conn:
                return unblock_writes(conn, self.control_schema, self.migration_id)
        from hooks.aws import aws_client
        from migration.aws import restore_source_writes

        ti = context["ti"]
        timeline = ti.xcom_pull(task_ids=self.cutover_task_id) or {}
        if timeline.get("status") == "completed":
            return {"restored": [], "note": "the target is open; the source stays fenced"}
        revoked = ti.xcom_pull(task_ids=self.cutover_task_id, key="revoked") or []
        restored = restore_source_writes(aws_client(self.source_aws_conn_id, "ec2"), revoked)
        self.log.info("Restored %d inbound rule(s) of the source's security groups", restored)
        return {"restored": restored}
