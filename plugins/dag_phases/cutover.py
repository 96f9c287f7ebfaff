"""Phase 4: the `cutover` group: approval gate, guardrails, the critical section and its teardown."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from airflow.sdk import TaskGroup, chain

from dag_phases.context import BuildContext
from dag_phases.task_ids import (
    CUTOVER,
    ENSURE_REPLICATION_INSTANCE,
    SWITCH_OVER,
    WAIT_CLONE_AVAILABLE,
    run_setting,
    xcom,
    xcom_if_any,
)
from migration.cutover_spec import CutoverSpec, DmsCdc, DnsSwitch, SecurityGroupFence

CUTOVER_STEPS = [
    "re-check the guardrails (window, lag, validation, schema drift)",
    "block writes on the source (journaled on the target so they can be restored)",
    "end every other session on the migrated databases; wait until none is left and no transaction is open",
    "wait until CDC has applied past the source's final LSN, then stop CDC",
    "re-check schema drift, sync sequences from the source, re-enable the target's triggers",
    "prove that no change committed on the source after the final LSN is missing from the target",
    "open the target",
]


@dataclass(frozen=True)
class CutoverTasks:
    gate: Any
    guard: Any
    switch: Any  # CUTOVER_SWITCH_OVER
    unblock: Any


def build_cutover(ctx: BuildContext, plan: Any, validation_results: Any) -> CutoverTasks:
    """The cutover group's tasks, chained; on AWS with `stop_source` the source is stopped after the switch."""
    from operators.cutover import CutoverOperator, UnblockSourceWritesOperator
    from operators.cutover_gate import CheckGuardrailsOperator, CutoverGateOperator

    config, src, tgt = ctx.config, ctx.src, ctx.tgt
    t_host, t_port = ctx.target_host, ctx.target_port
    databases = plan["databases"]
    spec = cutover_spec(ctx)
    with TaskGroup(group_id=CUTOVER, tooltip="Gate, guardrails and the critical section"):
        window = {"not_before": run_setting("cutover_not_before", " or ''"),
                  "not_after": run_setting("cutover_not_after", " or ''")}
        # Schema drift between source and target is shown at the gate and refused by the re-check.
        drift_check = {"target_conn_id": tgt, "schemas": plan["schemas"], "target_host": t_host, "target_port": t_port}
        gate = CutoverGateOperator(
            task_id="approve_cutover", migration_id=config.migration_id, source_conn_id=src, databases=databases,
            validation_results=validation_results, max_lag_bytes=config.cutover.max_lag_bytes, steps=CUTOVER_STEPS,
            auto=config.cutover.approval == "auto",
            response_timeout=timedelta(hours=config.cutover.approval_timeout_hours), **window, **drift_check,
        )
        guard = CheckGuardrailsOperator(
            task_id="check_guardrails", migration_id=config.migration_id, source_conn_id=src, databases=databases,
            validation_results=validation_results, max_lag_bytes=config.cutover.max_lag_bytes, **window, **drift_check,
        )
        switch = CutoverOperator(
            task_id=SWITCH_OVER, spec=spec, source_conn_id=src, target_conn_id=tgt, databases=databases,
            schemas=plan["schemas"], replication_role=f"{{{{ conn['{src}'].login }}}}", target_host=t_host,
            target_port=t_port,
            # The run's plan ({database, slot_name, dms_task_id}) and instance: the DMS tasks to stop.
            **({"dms_tasks": plan, "replication_instance_id": xcom(ENSURE_REPLICATION_INSTANCE, "identifier")}
               if ctx.uses_dms else {}),
            # Bounded as a whole too: the window aborts at max_write_block_seconds; the rest is preparation.
            execution_timeout=timedelta(seconds=config.cutover.max_write_block_seconds + 600),
        )
        # Teardown of the critical section: after a failure (even a lost worker) it restores source
        # writes; once the target is open it leaves the fence in place.
        # On AWS the target is reached at the endpoint wait_clone_available read; a run that stopped before
        # it never reached the cutover, and the teardown says so instead of failing to render.
        endpoint = ({"target_host": xcom_if_any(WAIT_CLONE_AVAILABLE, "host"),
                     "target_port": xcom_if_any(WAIT_CLONE_AVAILABLE, "port"), "target_endpoint_required": True}
                    if ctx.on_aws else {"target_host": t_host, "target_port": t_port})
        unblock = UnblockSourceWritesOperator(
            task_id="unblock_source_writes", spec=spec, source_conn_id=src, target_conn_id=tgt, **endpoint,
            databases=databases, schemas=plan["schemas"], control_database=ctx.first_db,
            doc_md="Restores source writes if a cutover left them blocked; changes nothing once the target is open.",
        )
        chain(gate, guard, switch, unblock.as_teardown(setups=guard))
        if ctx.on_aws and config.cutover.stop_source:
            from operators.aws_cutover import RdsStopSourceOperator

            switch >> RdsStopSourceOperator(task_id="stop_source", source_aws_conn_id=config.source.aws_conn_id,
                                            db_type=ctx.db_type, db_identifier=ctx.source_identifier)
    return CutoverTasks(gate=gate, guard=guard, switch=switch, unblock=unblock)


def cutover_spec(ctx: BuildContext) -> CutoverSpec:
    """The migration's cutover: its fence, CDC engine, target opener and bounds, from the YAML."""
    config = ctx.config
    cutover = config.cutover
    groups = dms = dns = None
    if cutover.write_block == "security_group":
        groups = SecurityGroupFence(
            aws_conn_id=config.source.aws_conn_id, security_group_ids=tuple(config.source.security_group_ids),
            keep_security_group_ids=tuple(config.dms.security_group_ids) if ctx.uses_dms else (),
            keep_cidrs=tuple(cutover.keep_cidrs))
    if ctx.uses_dms:
        dms = DmsCdc(aws_conn_id=config.target.aws_conn_id, plugin=config.dms.plugin)
    if cutover.dns_zone_id:
        dns = DnsSwitch(aws_conn_id=config.target.aws_conn_id, zone_id=cutover.dns_zone_id,
                        record_name=cutover.dns_record_name, ttl=cutover.dns_ttl)
    return CutoverSpec(
        migration_id=config.migration_id, control_schema=config.control_schema,
        application_roles=tuple(cutover.application_roles), drain_timeout_seconds=cutover.drain_timeout_seconds,
        max_write_block_seconds=cutover.max_write_block_seconds, security_groups=groups, dms=dms, dns=dns)
