"""Phase 5: teardowns that run however the run ends (slots, AWS resources, the report), and DMS cleanup."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from airflow.sdk import TaskGroup, chain

from dag_phases.context import BuildContext
from dag_phases.load import LOAD_SUMMARY
from dag_phases.task_ids import CLEANUP, CUTOVER_SWITCH_OVER, WAIT_CLONE_AVAILABLE
from migration import naming


@dataclass(frozen=True)
class CleanupTasks:
    cleanup: list[Any]  # teardowns of the plan
    dms_scope: Any | None  # DMS: first of the DMS deletions, after a completed cutover
    report: Any
    moved: list[Any]  # one per YAML database: its Asset event, after a completed cutover


def build_cleanup(ctx: BuildContext, plan: Any, validation_results: Any) -> CleanupTasks:
    """Teardowns: they run however the run ends, and a reject or dry run does not skip them."""
    from operators.report import MigrationReportOperator, SourceSlotCleanupOperator

    config = ctx.config
    cleanup = [SourceSlotCleanupOperator(
        task_id=CLEANUP, source_conn_id=ctx.src, plan=plan, cutover_task_id=CUTOVER_SWITCH_OVER,
        control_schema=config.control_schema, migration_id=config.migration_id, target_conn_id=ctx.tgt,
        on_aws=ctx.on_aws,
    ).as_teardown(setups=plan)]
    if ctx.on_aws:
        cleanup.append(_aws_cleanup(ctx).as_teardown(setups=plan))
    # DMS resources go only after a completed cutover: until then a rerun resumes with them.
    dms_scope = _dms_cleanup(ctx, plan) if ctx.uses_dms else None
    report = MigrationReportOperator(
        task_id="report", migration_id=config.migration_id, config_summary={
            "initial_load": config.initial_load, "cdc_engine": config.cdc_engine, "platform": config.platform},
        databases=plan["databases"], validation_results=validation_results, cutover_task_id=CUTOVER_SWITCH_OVER,
        cleanup_task_id=CLEANUP, target_conn_id=ctx.tgt, **_report_endpoint(ctx),
        control_schema=config.control_schema,
        load_summary_task_id=LOAD_SUMMARY if config.initial_load == "pg_dump" else None,
    ).as_teardown(setups=plan)
    return CleanupTasks(cleanup=cleanup, dms_scope=dms_scope, report=report, moved=_database_moved(ctx, plan))


def _report_endpoint(ctx: BuildContext) -> dict[str, str | None]:
    """The target's endpoint for the report's lag chart. On AWS a run that stopped before
    `wait_clone_available` has none: the template renders "None" (the connection's own) instead of failing,
    so the report of that run is still written (without the chart)."""
    if not ctx.on_aws:
        return {"target_host": None, "target_port": None}
    endpoint = f"(ti.xcom_pull(task_ids='{WAIT_CLONE_AVAILABLE}') or {{}})"
    return {"target_host": f"{{{{ {endpoint}.get('host') }}}}", "target_port": f"{{{{ {endpoint}.get('port') }}}}"}


DATABASE_MOVED = "database_moved"


def moved_task_ids(databases: list[str]) -> dict[str, str]:
    """Task id (inside the `database_moved` group) per database: the name with any character a task id cannot
    hold replaced by `_`, and numbered when two names come out the same."""
    ids: dict[str, str] = {}
    for database in databases:
        key = re.sub(r"[^\w-]", "_", database)[:200]
        if key in ids.values():
            key = f"{key}_{len(ids)}"
        ids[database] = key
    return ids


def _database_moved(ctx: BuildContext, plan: Any) -> list[Any]:
    """One task per database of the YAML, after the cutover: its outlet is that database's Asset, so a completed
    cutover emits one event per database the run moved (a database the run leaves out is skipped)."""
    from operators.after_cutover import DatabaseMovedOperator

    config = ctx.config
    with TaskGroup(group_id=DATABASE_MOVED, tooltip="One Asset event per database the cutover moved"):
        return [DatabaseMovedOperator(
            task_id=task_id, migration_id=config.migration_id, database=database, run_databases=plan["databases"],
            target_conn_id=ctx.tgt, control_schema=config.control_schema, on_aws=ctx.on_aws,
        ) for database, task_id in moved_task_ids(list(config.databases)).items()]


def _dms_cleanup(ctx: BuildContext, plan: Any):
    """Delete this run's CDC tasks, then their endpoints, then the instance if this migration created it
    and no other task runs on it. Only the run's databases, and only after its cutover completed: the
    migration's other databases keep theirs for their own runs."""
    from operators.dms import (
        DmsCleanupScopeOperator,
        DmsDeleteCdcTaskOperator,
        DmsDeleteEndpointsOperator,
        DmsDeleteReplicationInstanceOperator,
    )

    aws_conn, mid = ctx.config.target.aws_conn_id, ctx.config.migration_id
    scope = DmsCleanupScopeOperator(task_id="dms_cleanup_scope", plan=plan, cutover_task_id=CUTOVER_SWITCH_OVER)
    deletes = DmsDeleteCdcTaskOperator.partial(task_id="delete_cdc_task", aws_conn_id=aws_conn).expand(
        replication_task_id=scope.output)
    endpoints = DmsDeleteEndpointsOperator(
        task_id="delete_dms_endpoints", aws_conn_id=aws_conn, endpoint_identifiers=scope.output["endpoint_identifiers"])
    instance = DmsDeleteReplicationInstanceOperator(
        task_id="delete_replication_instance", aws_conn_id=aws_conn,
        replication_instance_identifier=naming.dms_instance_id(mid), migration_id=mid)
    chain(scope, deletes, endpoints, instance)
    return scope


def _aws_cleanup(ctx: BuildContext):
    from operators.aws_cleanup import AwsCleanupOperator

    config = ctx.config
    return AwsCleanupOperator(
        task_id="cleanup_aws", source_aws_conn_id=config.source.aws_conn_id, migration_id=config.migration_id,
        target_account_id=config.target.account_id, share_name=naming.ram_share_name(config.migration_id),
        remove_share=ctx.is_aurora_clone, source_kms_key_id=config.source.kms_key_id,
        source_snapshot_identifier=naming.snapshot_id(config.migration_id, "source")
        if config.initial_load == "rds_snapshot" else None,
    )
