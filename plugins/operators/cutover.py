"""The cutover's critical section as one task, and the teardown that undoes its write fence."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import ExitStack
from functools import partial
from itertools import chain
from typing import Any

from airflow.sdk import BaseOperator, Context

from connections.postgres import connect
from migration import naming, sequences, target_prep
from migration.cutover import (
    CutoverAborted,
    CutoverPlan,
    LocalTargetOpener,
    NativeCdc,
    NativeCdcDatabase,
    run_cutover,
    unblock_run,
)
from migration.cutover_spec import CutoverSpec
from migration.drift import SourceSchemaWatch
from migration.endpoints import endpoint_override
from migration.fence import RoleFence, restore_role_fence
from migration.journal import CutoverJournal
from migration.native_cdc import enable_subscription
from migration.source_quiet import ChangesAfterFinalLsn, SlotCheck, SourceDrain, bound_session

# Every statement in the window waits at most this long for a lock; a step runs at most max_write_block_seconds.
LOCK_TIMEOUT_SECONDS = 2.0


def _journal(conn: Any, control_schema: str, migration_id: str, run_id: str | None) -> CutoverJournal:
    if not run_id:
        raise ValueError("run_id: the Airflow run id is required (the journal is kept per run)")
    return CutoverJournal(conn=conn, control_schema=control_schema, migration_id=migration_id, run_id=run_id)


def _checked(spec: Any) -> CutoverSpec:
    if not isinstance(spec, CutoverSpec):
        raise TypeError(f"spec: expected a migration.cutover_spec.CutoverSpec, got {type(spec).__name__}")
    return spec


class CutoverOperator(BaseOperator):
    """Block source writes, drain, stop CDC, sync sequences, enable triggers, prove, open the target.

    One task so the write-blocked window holds no scheduling gaps. Writes are fenced by roles
    (``application_roles`` and their members, or every login role but the kept ones) or by security
    groups; either way every other client session on the migrated databases is ended. Every step is
    journaled in ``<control_schema>.cutover_journal`` in the target's control database, keyed by run.
    Any failure before the target opens restores source writes exactly and fails the task naming the
    step (the timeline is pushed to XCom under ``timeline``). Returns the timeline:
    ``{status, writes_blocked_at, target_open_at, write_blocked_seconds, final_lsn, durations, steps, ...}``.
    """

    template_fields: Sequence[str] = ("source_conn_id", "target_conn_id", "databases", "schemas", "replication_role",
                                      "control_database", "target_host", "target_port", "dms_tasks",
                                      "replication_instance_id", "run_id")
    ui_color = "#f4cccc"

    def __init__(self, *, spec: CutoverSpec, source_conn_id: str, target_conn_id: str, databases: Sequence[str],
                 schemas: Sequence[str], replication_role: str, control_database: str | None = None,
                 target_host: str | None = None, target_port: int | str | None = None, dms_tasks: Any = None,
                 replication_instance_id: str | None = None, run_id: str = "{{ run_id }}", **kwargs: Any):
        """``spec``: the migration's cutover (fence, CDC engine, opener, bounds), known when the DAG is built.
        The rest is what a run decides, templated: the connections, the run's databases and schemas, the
        target's endpoint, the DMS tasks of the run's plan (``{database, slot_name, dms_task_id}``) and
        replication instance, and the Airflow run id that keys the journal."""
        super().__init__(**kwargs)
        self.spec = _checked(spec)
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.databases = databases
        self.schemas = schemas
        self.replication_role = replication_role
        self.control_database = control_database
        self.target_host = target_host
        self.target_port = target_port
        self.dms_tasks = dms_tasks
        self.replication_instance_id = replication_instance_id
        self.run_id = run_id

    def execute(self, context: Context) -> dict[str, Any]:
        databases = list(self.databases)
        schemas = list(self.schemas)
        if not databases:
            raise ValueError("databases: at least one database is required")
        host, port = endpoint_override(self.target_host, self.target_port)
        spec = self.spec
        control_db = self.control_database or databases[0]
        bound = partial(bound_session, lock_timeout_s=min(LOCK_TIMEOUT_SECONDS, float(spec.max_write_block_seconds)),
                        statement_timeout_s=float(spec.max_write_block_seconds), run=str(self.run_id))
        with ExitStack() as stack:
            # Every connection is open before writes are blocked: the fence revokes CONNECT.
            def opened(conn: Any) -> Any:
                stack.enter_context(conn)
                bound(conn)
                return conn

            control = opened(connect(self.source_conn_id, dbname=control_db))
            sources = {db: control if db == control_db else opened(connect(self.source_conn_id, dbname=db))
                       for db in databases}
            # Sequences are read on sessions of their own (kept like the others), alongside CDC's last apply: two
            # per database, the second for the stored values of the sequences never called.
            readers = {db: tuple(opened(connect(self.source_conn_id, dbname=db)) for _ in range(2))
                       for db in databases if spec.sync_sequences}
            targets = {db: opened(connect(self.target_conn_id, dbname=db, host=host, port=port)) for db in databases}
            journal = _journal(targets[databases[0]], spec.control_schema, spec.migration_id, self.run_id)
            keep_pids = sorted({conn.info.backend_pid for conn in [*sources.values(), *chain(*readers.values())]})
            plan = CutoverPlan(
                journal=journal, fence=self._fence(control, databases, journal, keep_pids),
                drain=SourceDrain(conn=control, databases=databases, keep_pids=keep_pids),
                cdc=self._cdc(control, sources, targets, databases),
                proof=ChangesAfterFinalLsn(checks=self._slot_checks(sources, databases, schemas), databases=databases,
                                           keep_pids=keep_pids),
                opener=self._opener(host, port, databases), databases=databases,
                drain_timeout_s=float(spec.drain_timeout_seconds),
                max_write_block_s=float(spec.max_write_block_seconds),
                # DMS reads and validates through the source login; native CDC only through walsenders.
                unfenceable_roles=[control.info.user] if spec.dms is None else [],
                resume_hint=NativeCdc.resume_hint() if spec.dms is None else (
                    "To resume CDC, clear start_cdc.start_cdc_task for the database: it resumes the stopped DMS task "
                    "from its checkpoint."))
            # Schema drift: both sides compared ahead of the fence; inside the window, once the source is quiet
            # (no DDL can come after this), only the source's catalog marker is read again.
            watches = {db: SourceSchemaWatch(sources[db], targets[db], schemas, database=db) for db in databases}
            ahead = [(f"check_schema_drift_ahead[{db}]", watch.ahead) for db, watch in watches.items()]
            plan.after_drain = [(f"check_schema_drift[{db}]", watch.recheck) for db, watch in watches.items()]
            after, undo = [], []
            if spec.sync_sequences:
                # Every sequence is set ahead of the fence; inside the window only those that moved since.
                syncs = {db: sequences.SequenceSync(readers[db][0], targets[db], schemas, uncalled_conn=readers[db][1])
                         for db in databases}
                ahead += [(f"presync_sequences[{db}]", sync.presync) for db, sync in syncs.items()]
                plan.alongside_cdc = [(f"read_sequences[{db}]", sync.read_moved) for db, sync in syncs.items()]
                after += [(f"sync_sequences[{db}]", sync.sync_moved) for db, sync in syncs.items()]
            if spec.enable_triggers:
                for db in databases:
                    ddl = target_prep.saved_trigger_ddl(targets[db], spec.control_schema)
                    if not ddl:
                        continue
                    enable = (f"enable_triggers[{db}]", partial(target_prep.enable_triggers, targets[db], ddl))
                    # Native CDC's apply worker runs as a replica session, which fires none of the triggers
                    # disabled for CDC (the enabled-by-default ones): they are enabled ahead of the fence.
                    # DMS applies as an ordinary session, so its triggers stay off until CDC has stopped.
                    (ahead if spec.dms is None else after).append(enable)
                    undo.append((f"disable_triggers[{db}]", partial(
                        target_prep.disable_user_triggers, targets[db], schemas,
                        control_schema=spec.control_schema)))
            plan.before_fence = ahead
            plan.after_stop, plan.undo_after_stop = after, undo
            prepare = getattr(plan.opener, "prepare", None)
            if prepare:
                prepare()
            try:
                timeline = run_cutover(plan)
            except CutoverAborted as exc:
                context["ti"].xcom_push(key="timeline", value=exc.timeline)
                raise
        if timeline.get("write_blocked_seconds") is not None:
            self.log.info("Cutover done: writes blocked for %.3f s", timeline["write_blocked_seconds"])
        return timeline

    def _fence(self, control: Any, databases: list[str], journal: CutoverJournal, keep_pids: list[int]) -> Any:
        spec, groups = self.spec, self.spec.security_groups
        if groups is None:
            return RoleFence(conn=control, journal=journal, databases=databases,
                             replication_role=self.replication_role, roles=list(spec.application_roles) or None,
                             exclude_roles=list(spec.exclude_roles), keep_pids=keep_pids)
        from connections.aws import aws_client
        from migration.aws.cutover import SecurityGroupWriteBlock

        def persist(plan: list[dict[str, Any]]) -> None:
            # Journaled before any rule is revoked, so the teardown can put them back after a lost worker.
            journal.record_fence([{"kind": "security_group", "object": group["GroupId"], "previous": group}
                                  for group in plan])

        fence = SecurityGroupWriteBlock(
            ec2=aws_client(groups.aws_conn_id, "ec2"), security_group_ids=list(groups.security_group_ids),
            keep_security_group_ids=list(groups.keep_security_group_ids), keep_cidrs=list(groups.keep_cidrs),
            persist=persist)
        return _JournaledSecurityGroups(fence, journal)

    def _cdc(self, control: Any, sources: dict[str, Any], targets: dict[str, Any], databases: list[str]) -> Any:
        spec = self.spec
        if spec.dms is None:
            return NativeCdc(source_conn=control, links=[
                NativeCdcDatabase(db, naming.slot_name(spec.migration_id, db),
                                  naming.subscription_name(spec.migration_id, db),
                                  targets[db]) for db in databases])
        from connections.aws import aws_client
        from migration.dms.cutover import DmsCdcDatabase, DmsCdcEngine, find_task

        # dms_tasks: the run's plan ({database, slot_name, dms_task_id}); task ARNs are looked up by identifier.
        client = aws_client(spec.dms.aws_conn_id, "dms")
        links = []
        for item in list(self.dms_tasks or []):
            if item["database"] not in databases:
                continue
            found = find_task(client, item["dms_task_id"])
            if not found:
                raise ValueError(f"dms_tasks: no DMS task {item['dms_task_id']} for database {item['database']}")
            links.append(DmsCdcDatabase(database=item["database"], replication_task_arn=found["ReplicationTaskArn"],
                                        slot_name=item["slot_name"], source_conn=sources[item["database"]]))
        # The engine uses the cutover's own source sessions, which the drain keeps.
        return DmsCdcEngine(links=links, source_conn=control, dms=client,
                            cloudwatch=aws_client(spec.dms.aws_conn_id, "cloudwatch"),
                            replication_instance_id=self.replication_instance_id or None,
                            marker_schema=spec.control_schema)

    def _slot_checks(self, sources: dict[str, Any], databases: list[str], schemas: list[str]) -> list[SlotCheck]:
        spec = self.spec
        native = spec.dms is None
        return [SlotCheck(database=db, source_conn=sources[db], slot_name=naming.slot_name(spec.migration_id, db),
                          plugin="pgoutput" if native else spec.dms.plugin,
                          publication=naming.publication_name(spec.migration_id, db) if native else None,
                          schemas=schemas) for db in databases]

    def _opener(self, host: str | None, port: int | None, databases: list[str]) -> Any:
        dns = self.spec.dns
        if dns is None:
            return LocalTargetOpener(endpoint={"conn_id": self.target_conn_id, "host": host, "port": port,
                                               "databases": databases})
        from connections.aws import aws_client
        from migration.aws.cutover import Route53TargetOpener

        return Route53TargetOpener(route53=aws_client(dns.aws_conn_id, "route53"), hosted_zone_id=dns.zone_id,
                                   record_name=dns.record_name, target_host=host, ttl=dns.ttl)


class _JournaledSecurityGroups:
    """The security-group fence, undone from the journal (the rules saved before any was revoked)."""

    name = "security_group"

    def __init__(self, fence: Any, journal: CutoverJournal):
        self.fence, self.journal = fence, journal

    def prepare(self) -> Any:
        return self.fence.prepare()

    def block(self) -> Any:
        return self.fence.block()

    def unblock(self) -> dict[str, Any]:
        from migration.aws.cutover import restore_source_writes

        records = [r for r in self.journal.read().fence_records if r["kind"] == "security_group"]
        restored = restore_source_writes(self.fence.ec2, [r["previous"] for r in records])
        self.journal.mark_restored()
        return {"restored": restored}


class UnblockSourceWritesOperator(BaseOperator):
    """Restore exactly what this run's cutover fence changed on the source, reading only the run's journal.

    Runs as the teardown of the critical section. Once the target is open it changes nothing; with
    nothing fenced it changes nothing. If the cutover had enabled the target's triggers and did not open
    the target, they are disabled again, and stopped native CDC is resumed. ``force_restore`` (a task param: ``airflow
    tasks test … -t
    '{"force_restore": true}'``) restores the source even after the target opened, for when the
    application was moved back. Returns ``{restored, ...}``.
    """

    template_fields: Sequence[str] = ("source_conn_id", "target_conn_id", "control_database", "target_host",
                                      "target_port", "databases", "schemas", "run_id")
    ui_color = "#d9ead3"

    def __init__(self, *, spec: CutoverSpec, source_conn_id: str, target_conn_id: str, control_database: str,
                 target_host: str | None = None, target_port: int | str | None = None, databases: Any = (),
                 schemas: Any = (), run_id: str = "{{ run_id }}", target_endpoint_required: bool = False,
                 **kwargs: Any):
        """``spec``: the same cutover spec as the critical section's; the other arguments as there.
        ``target_endpoint_required``: the target is reached only at ``target_host`` (AWS: the endpoint
        wait_clone_available read); without one, no cutover of this run can have fenced anything."""
        super().__init__(**kwargs)
        self.target_endpoint_required = target_endpoint_required
        self.spec = _checked(spec)
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.control_database = control_database
        self.target_host = target_host
        self.target_port = target_port
        self.databases = databases
        self.schemas = schemas
        self.run_id = run_id

    def execute(self, context: Context) -> dict[str, Any]:
        force = bool((context.get("params") or {}).get("force_restore", False))
        host, port = endpoint_override(self.target_host, self.target_port)
        if host is None and self.target_endpoint_required:
            # switch_over takes the same endpoint and cannot start without it: nothing was fenced since the
            # endpoint was last read, and the journal that would say otherwise lives on that target.
            reason = ("the target's endpoint was never read in this run (wait_clone_available has no result), so "
                      "no cutover ran and nothing is fenced; rerun this task after wait_clone_available if the "
                      "source was fenced by an earlier try")
            self.log.warning("Unblock: %s", reason)
            return {"restored": [], "skipped": reason}
        with ExitStack() as stack:
            target = stack.enter_context(connect(self.target_conn_id, dbname=self.control_database, host=host,
                                                 port=port))
            spec = self.spec
            journal = _journal(target, spec.control_schema, spec.migration_id, self.run_id)
            undo = []
            if journal.ensure().read().step("stop_cdc") == "done":
                # A worker died after CDC stopped: triggers off again and, for native CDC, apply resumed.
                for db in list(self.databases or []):
                    conn = stack.enter_context(connect(self.target_conn_id, dbname=db, host=host, port=port))
                    # A lock held on a target table must fail this teardown, not hang it.
                    bound_session(conn, lock_timeout_s=LOCK_TIMEOUT_SECONDS, statement_timeout_s=60,
                                  run=str(self.run_id))
                    undo.append((f"disable_triggers[{db}]", partial(target_prep.disable_user_triggers, conn,
                                                                     list(self.schemas or []),
                                                                     control_schema=spec.control_schema)))
                    if spec.dms is None:
                        subscription = naming.subscription_name(spec.migration_id, db)
                        undo.append((f"resume_cdc[{db}]", partial(enable_subscription, conn, subscription)))
            result = unblock_run(journal, self._restore, force=force, undo_after_stop=undo)
        self.log.info("Unblock: %s", json.dumps(result, default=str))
        return result

    def _restore(self, records: list[dict[str, Any]]) -> list[str]:
        restored: list[str] = []
        groups = [r for r in records if r["kind"] == "security_group"]
        if groups:
            from connections.aws import aws_client
            from migration.aws.cutover import restore_source_writes

            # The connection the fence used: the journal holds only what it changed.
            aws_conn_id = self.spec.security_groups.aws_conn_id if self.spec.security_groups else None
            count = restore_source_writes(aws_client(aws_conn_id, "ec2"), [r["previous"] for r in groups])
            restored.append(f"security_group:{count} rule(s)")
        roles = [r for r in records if r["kind"] != "security_group"]
        if roles:
            with connect(self.source_conn_id, dbname=self.control_database) as source:
                restored += restore_role_fence(source, roles)
        return restored

