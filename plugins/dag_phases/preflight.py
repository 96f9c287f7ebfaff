"""Phase 1: validate the run, check the source (and AWS), stop on a dry run, change and prepare the source."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow.sdk import chain, task, task_group

from dag_phases.context import BuildContext
from dag_phases.plan import apply_source_changes_kwargs, per_database_plan, preflight_kwargs, prepare_source_kwargs
from dag_phases.task_ids import PREPARE_SOURCE, PROCEED, VALIDATE_RUN, WAIT_CLONE_AVAILABLE


@dataclass(frozen=True)
class PreflightTasks:
    plan: Any  # validate_run's output: the per-database plan
    checks: list[Any]
    proceed: Any
    source_changes: list[Any]
    source_ready: Any  # the mapped prepare_source group
    dns_ready: Any | None  # lower_dns_ttl (AWS with a DNS record): after proceed, before the switch only


def build_preflight(ctx: BuildContext) -> PreflightTasks:
    """The read-only checks up to `proceed`, then the source changes and the mapped `prepare_source` group."""
    from operators.preflight import ApplySourceChangesOperator, PreflightOperator

    config = ctx.config

    @task(task_id=VALIDATE_RUN)
    def validate_run(**context: Any) -> list[dict[str, Any]]:
        """Validate the run's parameters against the migration before anything is created."""
        run = config.run_settings(dict(context["params"]))
        ti = context["ti"]
        for key, value in vars(run).items():
            ti.xcom_push(key=key, value=value)
        return per_database_plan(config, run.databases, run.schemas)

    plan = validate_run()

    checks = [PreflightOperator.partial(
        task_id="preflight", source_conn_id=ctx.src, engine=config.cdc_engine,
        max_xact_age_s=config.max_transaction_age_seconds,
        allow_replica_identity_full=config.allow_replica_identity_full,
        exclude_schemas=list(config.exclude_schemas), control_schema=config.control_schema,
        logical_replication_set_later=ctx.on_aws and config.set_logical_replication,
        logical_load=config.initial_load == "pg_dump",
    ).expand_kwargs(plan.map(preflight_kwargs))]
    if ctx.on_aws:
        checks.append(_aws_preflight(ctx))
    if config.initial_load == "pg_dump":
        from operators.logical_load import LogicalLoadPreflightOperator

        # The target of a logical load exists already: its version, database and missing roles. On AWS its
        # endpoint is read from AWS first, so the check (a dry run's too) reaches the server the load fills.
        target_check = LogicalLoadPreflightOperator.partial(
            task_id="preflight_target", source_conn_id=ctx.src, target_conn_id=ctx.tgt,
            migration_id=config.migration_id, control_schema=config.control_schema,
            target_host=ctx.target_host, target_port=ctx.target_port,
        ).expand_kwargs(plan.map(apply_source_changes_kwargs))
        if ctx.on_aws:
            endpoint = _existing_target_available(ctx)
            endpoint >> target_check
            checks.append(endpoint)
        checks.append(target_check)

    # After proceed (a dry run never gets here): the source changes preflight reported it would make.
    source_changes = [ApplySourceChangesOperator.partial(
        task_id="apply_source_changes", source_conn_id=ctx.src, control_schema=config.control_schema,
        allow_replica_identity_full=config.allow_replica_identity_full,
    ).expand_kwargs(plan.map(apply_source_changes_kwargs))]
    if ctx.on_aws and config.set_logical_replication:
        from operators.aws_clone import RdsSetLogicalReplicationOperator

        source_changes.insert(0, RdsSetLogicalReplicationOperator(
            task_id="source_logical_replication_on", aws_conn_id=config.source.aws_conn_id,
            db_type=ctx.db_type, db_identifier=ctx.source_identifier, enabled=True))
    dns_ready = None
    if ctx.on_aws and config.cutover.dns_zone_id:
        from operators.aws_cutover import Route53LowerTtlOperator

        # cutover.dns_ttl in place at least one old TTL before the cutover (the task waits that long). A branch
        # of its own: the clone, CDC and the waits go on meanwhile; only the switch waits for it.
        dns_ready = Route53LowerTtlOperator(
            task_id="lower_dns_ttl", aws_conn_id=config.target.aws_conn_id, hosted_zone_id=config.cutover.dns_zone_id,
            record_name=config.cutover.dns_record_name, ttl=config.cutover.dns_ttl)

    @task.short_circuit(task_id=PROCEED, ignore_downstream_trigger_rules=True)
    def proceed(**context: Any) -> bool:
        """Stop here on a dry run: the checks passed and nothing was created."""
        return not context["ti"].xcom_pull(task_ids=VALIDATE_RUN, key="dry_run")

    source_ready = _prepare_source(ctx).expand_kwargs(plan.map(prepare_source_kwargs))
    return PreflightTasks(plan=plan, checks=checks, proceed=proceed(), source_changes=source_changes,
                          source_ready=source_ready, dns_ready=dns_ready)


def _aws_preflight(ctx: BuildContext):
    from migration.aws.preflight import AwsPreflightChecks
    from operators.aws_preflight import AwsPreflightOperator

    config = ctx.config
    checks = AwsPreflightChecks(
        db_type=ctx.db_type, source_identifier=ctx.source_identifier, migration_id=config.migration_id,
        source_kms_key_id=config.source.kms_key_id, target_kms_key_id=config.target.kms_key_id,
        target_identifier=ctx.target_identifier,
        # The clone starts with the copied slots and needs logical replication there; a loaded target does not.
        target_parameter_group=None if config.initial_load == "pg_dump" else config.target.parameter_group,
        shares_storage=config.initial_load != "pg_dump")
    return AwsPreflightOperator(
        task_id="preflight_aws", source_aws_conn_id=config.source.aws_conn_id,
        target_aws_conn_id=config.target.aws_conn_id, checks=checks,
        set_logical_replication=config.set_logical_replication, source_postgres_conn_id=config.source.conn_id,
        database=ctx.first_db, cdc_engine=config.cdc_engine, dns_zone_id=config.cutover.dns_zone_id,
        dns_record_name=config.cutover.dns_record_name, dns_ttl=config.cutover.dns_ttl)


def _existing_target_available(ctx: BuildContext):
    """pg_dump on AWS: `wait_clone_available` for the target that exists already; its XCom is the endpoint
    every task on the target connects to (as the clone's is on the other paths)."""
    from sensors.aws_rds import RdsDbAvailableSensor

    target = ctx.config.target
    return RdsDbAvailableSensor(task_id=WAIT_CLONE_AVAILABLE, aws_conn_id=target.aws_conn_id,
                                db_type="cluster" if target.cluster_identifier else "instance",
                                db_identifier=target.cluster_identifier or target.instance_identifier)


def _prepare_source(ctx: BuildContext):
    from operators.replication_slot import CreateReplicationSlotOperator
    from operators.target_prep import CreateControlSchemaOperator

    config, src = ctx.config, ctx.src

    @task_group(group_id=PREPARE_SOURCE)
    def prepare_source(database, schemas, slot_name, publication):
        """Control schema, publication (native) and the logical slot, per database, before the clone."""
        steps = [CreateControlSchemaOperator(task_id="create_source_control_schema", conn_id=src,
                                             database=database, control_schema=config.control_schema)]
        if not ctx.uses_dms:
            from operators.native_cdc import CreatePublicationOperator

            # The publication must exist before the slot: pgoutput looks it up as of each decoded change.
            steps.append(CreatePublicationOperator(task_id="create_publication", source_conn_id=src,
                                                   database=database, publication=publication, schemas=schemas))
        if config.initial_load == "pg_dump":
            chain(*steps)  # the load creates the slot, with the snapshot its dump reads at
            return
        steps.append(CreateReplicationSlotOperator(task_id="create_slot", source_conn_id=src, database=database,
                                                   slot_name=slot_name, engine=config.cdc_engine,
                                                   wait_for_xacts_s=config.max_transaction_age_seconds))
        chain(*steps)

    return prepare_source
