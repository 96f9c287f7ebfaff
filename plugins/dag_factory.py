"""Builds one migration DAG from one YAML file: `migrate__<migration_id>`.

Each DAG holds only its own path's tasks, chosen here at build time from the initial load and the
CDC engine. Per-database work runs in task groups mapped over the run's databases. Building a
DAG reads its YAML and nothing else: no connection, database or AWS call happens at parse time.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, chain, task, task_group

from migration import naming
from migration.config import ConfigError, MigrationConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MIGRATIONS_DIR = ROOT / "include" / "migrations"


def migrations_dir() -> Path:
    """Where the migration YAML files live (MIGRATIONS_DIR overrides, e.g. for tests)."""
    return Path(os.environ.get("MIGRATIONS_DIR", DEFAULT_MIGRATIONS_DIR))


def config_for_dag_file(dag_file: str) -> MigrationConfig:
    """The YAML that belongs to a DAG file named migrate__<migration_id>.py."""
    stem = Path(dag_file).stem
    if not stem.startswith("migrate__"):
        raise ConfigError(dag_file, "(file name)", "a migration DAG file must be named migrate__<migration_id>.py")
    return load_config(migrations_dir() / f"{stem.removeprefix('migrate__')}.yaml")


def per_database_plan(config: MigrationConfig, databases: list[str], schemas: list[str]) -> list[dict[str, Any]]:
    """Arguments of each mapped per-database task group: the database and everything derived from it."""
    plan = []
    for db in databases:
        item = {
            "database": db,
            "schemas": schemas,
            "slot_name": naming.slot_name(config.migration_id, db),
            "publication": naming.publication_name(config.migration_id, db),
            "subscription": naming.subscription_name(config.migration_id, db),
            "dms_task_id": None, "dms_source_endpoint": None, "dms_target_endpoint": None,
            "dms_source_settings": None, "dms_table_mappings": None,
        }
        if config.cdc_engine == "dms":
            from migration.dms import requests as dms

            item.update(
                dms_task_id=naming.dms_task_id(config.migration_id, db),
                dms_source_endpoint=naming.dms_endpoint_id(config.migration_id, db, "source"),
                dms_target_endpoint=naming.dms_endpoint_id(config.migration_id, db, "target"),
                dms_source_settings=dms.source_postgres_settings(
                    slot_name=item["slot_name"], control_schema=config.control_schema, plugin=config.dms.plugin,
                    heartbeat_minutes=config.dms.heartbeat_minutes, capture_ddls=config.dms.capture_ddls,
                    secrets_manager_secret_id=config.dms.secrets_manager_secret_id,
                    secrets_manager_access_role_arn=config.dms.secrets_manager_access_role_arn),
                dms_table_mappings=dms.table_mappings(schemas),
            )
        plan.append(item)
    return plan


CUTOVER_STEPS = [
    "re-check the guardrails (window, lag, validation, schema drift)",
    "block writes on the source (journaled on the target so they can be restored)",
    "end every other session on the migrated databases; wait until none is left and no transaction is open",
    "wait until CDC has applied past the source's final LSN, then stop CDC",
    "re-check schema drift, sync sequences from the source, re-enable the target's triggers",
    "prove that no change committed on the source after the final LSN is missing from the target",
    "open the target",
]


def _doc(config: MigrationConfig) -> str:
    return f"""
### Migration `{config.migration_id}`

{config.description}

| | |
|---|---|
| platform | {config.platform} |
| initial load | {config.initial_load} |
| CDC engine | {config.cdc_engine} |
| databases | {', '.join(config.databases)} |
| schemas | {', '.join(config.schemas)} |
| approval | {config.cutover.approval} |
| config | `{config.path}` |

Trigger with the form to pick databases, schemas and the cutover window; **dry run** runs the
preflight checks only. Every task is safe to rerun. A failure after writes are blocked and before
the target opens restores source writes; the `unblock_source_writes` teardown makes sure of it.
"""


def build_dag(config: MigrationConfig) -> DAG:
    """The DAG for one migration config."""
    params = {name: Param(**spec) for name, spec in config.params_spec().items()}
    dag = DAG(
        dag_id=config.dag_id,
        description=config.description or f"Migrate {', '.join(config.databases)} ({config.initial_load} + {config.cdc_engine})",
        doc_md=_doc(config),
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        params=params,
        tags=["migration", f"platform:{config.platform}", f"load:{config.initial_load}", f"cdc:{config.cdc_engine}"],
        default_args={"owner": config.owner, "retries": 0},
    )
    with dag:
        _build_tasks(config)
    return dag


def _xcom(task_id: str, key: str) -> str:
    return f"{{{{ ti.xcom_pull(task_ids='{task_id}')['{key}'] }}}}"


def _build_tasks(config: MigrationConfig) -> None:
    from operators.cutover import CutoverOperator, UnblockSourceWritesOperator
    from operators.cutover_gate import CheckGuardrailsOperator, CutoverGateOperator
    from operators.preflight import ApplySourceChangesOperator, PreflightOperator
    from operators.replication_slot import CreateReplicationSlotOperator, DropCopiedSlotsOperator
    from operators.report import MigrationReportOperator, SourceSlotCleanupOperator
    from operators.target_prep import CreateControlSchemaOperator, DisableTargetTriggersOperator

    src, tgt = config.source.conn_id, config.target.conn_id
    aws = config.platform == "aws"
    dms = config.cdc_engine == "dms"
    first_db = "{{ ti.xcom_pull(task_ids='validate_run', key='databases')[0] }}"
    # On AWS the target's endpoint is read at run time from the clone; locally it is the connection's own.
    t_host = _xcom("wait_clone_available", "host") if aws else None
    t_port = _xcom("wait_clone_available", "port") if aws else None

    @task
    def validate_run(**context: Any) -> list[dict[str, Any]]:
        """Validate the run's parameters against the migration before anything is created."""
        run = config.run_settings(dict(context["params"]))
        ti = context["ti"]
        for key, value in vars(run).items():
            ti.xcom_push(key=key, value=value)
        return per_database_plan(config, run.databases, run.schemas)

    plan = validate_run()
    databases = plan["databases"]

    checks = [PreflightOperator.partial(
        task_id="preflight", source_conn_id=src, engine=config.cdc_engine,
        max_xact_age_s=config.max_transaction_age_seconds,
        allow_replica_identity_full=config.allow_replica_identity_full,
        exclude_schemas=list(config.exclude_schemas), control_schema=config.control_schema,
        logical_replication_set_later=aws and config.set_logical_replication,
    ).expand_kwargs(plan.map(preflight_kwargs))]
    if aws:
        checks.append(_aws_preflight(config, first_db))

    # After proceed (a dry run never gets here): the source changes preflight reported it would make.
    source_changes = [ApplySourceChangesOperator.partial(
        task_id="apply_source_changes", source_conn_id=src, control_schema=config.control_schema,
        allow_replica_identity_full=config.allow_replica_identity_full,
    ).expand_kwargs(plan.map(apply_source_changes_kwargs))]
    if aws and config.set_logical_replication:
        from operators.aws_clone import AwsSetLogicalReplicationOperator

        source_changes.insert(0, AwsSetLogicalReplicationOperator(
            task_id="source_logical_replication_on", aws_conn_id=config.source.aws_conn_id,
            db_type=_db_type(config), db_identifier=_source_identifier(config), enabled=True))

    @task.short_circuit(ignore_downstream_trigger_rules=True)
    def proceed(**context: Any) -> bool:
        """Stop here on a dry run: the checks passed and nothing was created."""
        return not context["ti"].xcom_pull(task_ids="validate_run", key="dry_run")

    @task_group(group_id="prepare_source")
    def prepare_source(database, schemas, slot_name, publication, subscription, dms_task_id, dms_source_endpoint,
                       dms_target_endpoint, dms_source_settings, dms_table_mappings):
        """Control schema, publication (native) and the logical slot, per database, before the clone."""
        steps = [CreateControlSchemaOperator(task_id="create_source_control_schema", conn_id=src,
                                             database=database, control_schema=config.control_schema)]
        if not dms:
            from operators.native_cdc import CreatePublicationOperator

            # The publication must exist before the slot: pgoutput looks it up as of each decoded change.
            steps.append(CreatePublicationOperator(task_id="create_publication", source_conn_id=src,
                                                   database=database, publication=publication, schemas=schemas))
        steps.append(CreateReplicationSlotOperator(task_id="create_slot", source_conn_id=src, database=database,
                                                   slot_name=slot_name, engine=config.cdc_engine,
                                                   wait_for_xacts_s=config.max_transaction_age_seconds))
        chain(*steps)

    source_ready = prepare_source.expand_kwargs(plan)

    load_first, clone_ready, capture = _initial_load(config, first_db)

    drop_slots = DropCopiedSlotsOperator(task_id="drop_copied_slots", target_conn_id=tgt, source_conn_id=src,
                                         database=first_db, target_host=t_host, target_port=t_port)
    after_drop = [drop_slots]
    if aws:
        from operators.aws_clone import AwsSetLogicalReplicationOperator

        logical_off = AwsSetLogicalReplicationOperator(
            task_id="target_logical_replication_off", aws_conn_id=config.target.aws_conn_id,
            db_type=_db_type(config), db_identifier=_target_identifier(config), enabled=False,
            parameter_group=config.target.parameter_group)
        drop_slots >> logical_off
        after_drop = [logical_off]

    @task_group(group_id="prepare_target")
    def prepare_target(database, schemas, slot_name, publication, subscription, dms_task_id, dms_source_endpoint,
                       dms_target_endpoint, dms_source_settings, dms_table_mappings):
        """Control schema and disabled user triggers (the exact enable DDL is saved), per database."""
        chain(
            CreateControlSchemaOperator(task_id="create_target_control_schema", conn_id=tgt, database=database,
                                        control_schema=config.control_schema, host=t_host, port=t_port,
                                        source_conn_id=src),
            DisableTargetTriggersOperator(task_id="disable_target_triggers", target_conn_id=tgt, source_conn_id=src,
                                          database=database,
                                          schemas=schemas, control_schema=config.control_schema,
                                          target_host=t_host, target_port=t_port),
        )

    target_ready = prepare_target.expand_kwargs(plan)

    captured_lsn = _xcom("capture_clone_lsn", "lsn")
    before_cdc = []
    if dms:
        from operators.dms import DmsEnsureReplicationInstanceOperator

        before_cdc.append(DmsEnsureReplicationInstanceOperator(
            task_id="ensure_replication_instance", aws_conn_id=config.target.aws_conn_id,
            migration_id=config.migration_id, replication_instance_identifier=naming.dms_instance_id(config.migration_id),
            replication_instance_arn=config.dms.replication_instance_arn, instance_class=config.dms.instance_class,
            allocated_storage_gb=config.dms.allocated_storage_gb, subnet_group=config.dms.subnet_group,
            security_group_ids=list(config.dms.security_group_ids), multi_az=config.dms.multi_az))

    @task_group(group_id="start_cdc")
    def start_cdc(database, schemas, slot_name, publication, subscription, dms_task_id, dms_source_endpoint,
                  dms_target_endpoint, dms_source_settings, dms_table_mappings):
        """Start change data capture from exactly the clone's LSN, per database."""
        if not dms:
            from operators.native_cdc import CreateSubscriptionOperator

            # "redo done at" names the last record the clone has; Aurora's function names the first it lacks.
            boundary = ({"origin_lsn": captured_lsn} if config.initial_load == "aurora_clone"
                        else {"captured_lsn": captured_lsn})
            CreateSubscriptionOperator(task_id="create_subscription", source_conn_id=src, target_conn_id=tgt,
                                       database=database, subscription=subscription, publication=publication,
                                       slot_name=slot_name, target_host=t_host, target_port=t_port,
                                       replication_conn_id=config.source.replication_conn_id,
                                       passfile_directory=(config.target.data_directory
                                                           if config.initial_load == "pg_basebackup" else None),
                                       **boundary)
            return
        _dms_start(config, database, slot_name, dms_task_id, dms_source_endpoint, dms_target_endpoint,
                   dms_source_settings, dms_table_mappings, captured_lsn, t_host, t_port)

    cdc_started = start_cdc.expand_kwargs(plan)

    @task_group(group_id="wait_in_sync")
    def wait_in_sync(database, schemas, slot_name, publication, subscription, dms_task_id, dms_source_endpoint,
                     dms_target_endpoint, dms_source_settings, dms_table_mappings):
        """Deferred waits: CDC lag under the limit, then a clean validation, per database."""
        if dms:
            from sensors.dms import DmsCdcLatencySensor, DmsValidationSensor

            task_arn = _mapped_xcom("start_cdc.create_cdc_task")
            lag = DmsCdcLatencySensor(
                task_id="wait_cdc_lag", aws_conn_id=config.target.aws_conn_id, replication_task_arn=task_arn,
                replication_instance_id=_xcom("ensure_replication_instance", "identifier"), source_conn_id=src,
                database=database, slot_name=slot_name, max_latency_seconds=config.dms.max_latency_seconds,
                consecutive_datapoints=config.dms.consecutive_datapoints,
                max_slot_lag_bytes=config.cutover.max_lag_bytes)
            clean = DmsValidationSensor(
                task_id="wait_validation_clean", aws_conn_id=config.target.aws_conn_id, replication_task_arn=task_arn,
                target_conn_id=tgt, database=database, control_schema=config.control_schema,
                target_host=t_host, target_port=t_port)
        else:
            from sensors.cdc_lag import CdcLagSensor
            from sensors.validation import ValidationCleanSensor

            lag = CdcLagSensor(task_id="wait_cdc_lag", source_conn_id=src, target_conn_id=tgt, database=database,
                               slot_name=slot_name, subscription=subscription,
                               max_lag_bytes=config.cutover.max_lag_bytes,
                               max_apply_age_seconds=config.cutover.max_apply_age_seconds,
                               control_schema=config.control_schema, target_host=t_host, target_port=t_port,
                               schemas=schemas, poll_interval=2)
            clean = ValidationCleanSensor(task_id="wait_validation_clean", source_conn_id=src, target_conn_id=tgt,
                                          database=database, schemas=schemas, validation_id=config.migration_id,
                                          control_schema=config.control_schema,
                                          chunk_rows=config.validation.chunk_rows,
                                          max_rechecks=config.validation.max_rechecks, slot_name=slot_name,
                                          target_host=t_host, target_port=t_port, poll_interval=2)
        lag >> clean

    in_sync = wait_in_sync.expand_kwargs(plan)
    # The mapped validation sensors' results, in the order of the run's databases.
    validation_results = in_sync.get_child_by_label("wait_validation_clean").output

    with _cutover_group():
        window = {"not_before": "{{ ti.xcom_pull(task_ids='validate_run', key='cutover_not_before') or '' }}",
                  "not_after": "{{ ti.xcom_pull(task_ids='validate_run', key='cutover_not_after') or '' }}"}
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
            task_id="switch_over", migration_id=config.migration_id, source_conn_id=src, target_conn_id=tgt,
            databases=databases, schemas=plan["schemas"], control_schema=config.control_schema,
            replication_role=f"{{{{ conn['{src}'].login }}}}", application_roles=list(config.cutover.application_roles),
            drain_timeout_seconds=config.cutover.drain_timeout_seconds,
            max_write_block_seconds=config.cutover.max_write_block_seconds, target_host=t_host, target_port=t_port,
            # Bounded as a whole too: the window aborts at max_write_block_seconds; the rest is preparation.
            execution_timeout=timedelta(seconds=config.cutover.max_write_block_seconds + 600),
            **_cutover_strategies(config, plan),
        )
        # Teardown of the critical section: after a failure (even a lost worker) it restores source
        # writes; once the target is open it leaves the fence in place.
        unblock = UnblockSourceWritesOperator(
            task_id="unblock_source_writes", migration_id=config.migration_id, source_conn_id=src,
            target_conn_id=tgt, target_host=t_host, target_port=t_port, databases=databases, schemas=plan["schemas"],
            control_database=first_db, control_schema=config.control_schema, write_block=config.cutover.write_block,
            source_aws_conn_id=config.source.aws_conn_id, cdc_engine=config.cdc_engine,
            doc_md="Restores source writes if a cutover left them blocked; changes nothing once the target is open.",
        )
        chain(gate, guard, switch, unblock.as_teardown(setups=guard))
        if aws and config.cutover.stop_source:
            from operators.aws_cutover import AwsStopSourceOperator

            switch >> AwsStopSourceOperator(task_id="stop_source", source_aws_conn_id=config.source.aws_conn_id,
                                            db_type=_db_type(config), db_identifier=_source_identifier(config))

    # Teardowns: they run however the run ends, and a reject or dry run does not skip them.
    cleanup = [SourceSlotCleanupOperator(
        task_id="cleanup", source_conn_id=src, plan=plan, cutover_task_id="cutover.switch_over",
        control_schema=config.control_schema,
    ).as_teardown(setups=plan)]
    if aws:
        cleanup.append(_aws_cleanup(config, logical_off.output).as_teardown(setups=plan))
    if dms:
        # DMS resources go only after a completed cutover: until then a rerun resumes with them.
        switch >> _dms_cleanup(config, plan)
    report = MigrationReportOperator(
        task_id="report", migration_id=config.migration_id, config_summary={
            "initial_load": config.initial_load, "cdc_engine": config.cdc_engine, "platform": config.platform},
        databases=databases, validation_results=validation_results, cutover_task_id="cutover.switch_over",
        cleanup_task_id="cleanup", target_conn_id=tgt, target_host=t_host, target_port=t_port,
        control_schema=config.control_schema,
    ).as_teardown(setups=plan)

    chain(plan, checks, proceed(), *source_changes, source_ready, load_first)
    chain(clone_ready, capture, drop_slots)
    chain(after_drop, target_ready, *before_cdc, cdc_started, in_sync, gate)
    chain(switch, cleanup, report)


def _mapped_xcom(task_id: str, key: str | None = None) -> str:
    """A value from the same map index of another task of this mapped group."""
    pick = f"['{key}']" if key else ""
    return f"{{{{ ti.xcom_pull(task_ids='{task_id}', map_indexes=ti.map_index){pick} }}}}"


def _db_type(config: MigrationConfig) -> str:
    return "cluster" if config.initial_load == "aurora_clone" else "instance"


def _source_identifier(config: MigrationConfig) -> str:
    return config.source.cluster_identifier if config.initial_load == "aurora_clone" else config.source.instance_identifier


def _target_identifier(config: MigrationConfig) -> str:
    return config.target.cluster_identifier if config.initial_load == "aurora_clone" else config.target.instance_identifier


def _cutover_strategies(config: MigrationConfig, plan: Any) -> dict[str, Any]:
    """The critical section's fence, CDC engine and target opener for this path."""
    args: dict[str, Any] = {"write_block": config.cutover.write_block, "cdc_engine": config.cdc_engine}
    if config.cutover.write_block == "security_group":
        args.update(source_aws_conn_id=config.source.aws_conn_id,
                    security_group_ids=list(config.source.security_group_ids),
                    keep_security_group_ids=list(config.dms.security_group_ids) if config.cdc_engine == "dms" else [],
                    keep_cidrs=list(config.cutover.keep_cidrs))
    if config.cdc_engine == "dms":
        args.update(target_aws_conn_id=config.target.aws_conn_id, dms_plugin=config.dms.plugin,
                    dms_tasks=plan,
                    replication_instance_id=_xcom("ensure_replication_instance", "identifier"))
    if config.cutover.dns_zone_id:
        args.update(target_aws_conn_id=config.target.aws_conn_id, dns_zone_id=config.cutover.dns_zone_id,
                    dns_record_name=config.cutover.dns_record_name, dns_ttl=config.cutover.dns_ttl)
    return args


def _aws_preflight(config: MigrationConfig, first_db: str):
    from operators.aws_preflight import AwsPreflightOperator

    return AwsPreflightOperator(
        task_id="preflight_aws", source_aws_conn_id=config.source.aws_conn_id,
        target_aws_conn_id=config.target.aws_conn_id, migration_id=config.migration_id, db_type=_db_type(config),
        source_identifier=_source_identifier(config), source_kms_key_id=config.source.kms_key_id,
        target_kms_key_id=config.target.kms_key_id, target_identifier=_target_identifier(config),
        target_parameter_group=config.target.parameter_group,
        set_logical_replication=config.set_logical_replication, source_postgres_conn_id=config.source.conn_id,
        database=first_db)


def _dms_start(config, database, slot_name, task_id, source_endpoint, target_endpoint, source_settings,
               table_mappings, captured_lsn, t_host, t_port) -> None:
    """DMS, per database: start LSN in the slot, endpoints, connection tests, the CDC-only task, running."""
    from migration.dms import requests as dms
    from operators.clone_lsn import ResolveCdcStartLsnOperator
    from operators.dms import (
        DmsCreateCdcTaskOperator,
        DmsEnsurePostgresEndpointOperator,
        DmsStartCdcTaskOperator,
        DmsTestConnectionOperator,
    )
    from sensors.dms import DmsTaskRunningSensor

    aws_conn = config.target.aws_conn_id
    instance_arn = _xcom("ensure_replication_instance", "arn")
    resolve = ResolveCdcStartLsnOperator(
        task_id="resolve_start_lsn", source_conn_id=config.source.conn_id, database=database, slot_name=slot_name,
        captured_lsn=captured_lsn, capture_method=_xcom("capture_clone_lsn", "method"), aws_conn_id=aws_conn,
        replication_task_id=task_id)
    source_ep = DmsEnsurePostgresEndpointOperator(
        task_id="ensure_source_endpoint", aws_conn_id=aws_conn, endpoint_identifier=source_endpoint,
        endpoint_type="source", database=database, postgres_conn_id=config.source.conn_id,
        postgresql_settings=source_settings, migration_id=config.migration_id)
    target_ep = DmsEnsurePostgresEndpointOperator(
        task_id="ensure_target_endpoint", aws_conn_id=aws_conn, endpoint_identifier=target_endpoint,
        endpoint_type="target", database=database, postgres_conn_id=config.target.conn_id, host=t_host, port=t_port,
        postgresql_settings=dms.target_postgres_settings(
            session_replication_role_replica=config.dms.session_replication_role_replica),
        migration_id=config.migration_id, source_conn_id=config.source.conn_id)
    tests = [DmsTestConnectionOperator(task_id=f"test_{side}_connection", aws_conn_id=aws_conn,
                                       replication_instance_arn=instance_arn,
                                       endpoint_arn=_mapped_xcom(f"start_cdc.ensure_{side}_endpoint", "arn"))
             for side in ("source", "target")]
    start_lsn = _mapped_xcom("start_cdc.resolve_start_lsn", "start_lsn")
    create = DmsCreateCdcTaskOperator(
        task_id="create_cdc_task", aws_conn_id=aws_conn, replication_task_id=task_id,
        source_endpoint_arn=_mapped_xcom("start_cdc.ensure_source_endpoint", "arn"),
        target_endpoint_arn=_mapped_xcom("start_cdc.ensure_target_endpoint", "arn"),
        replication_instance_arn=instance_arn, table_mappings=table_mappings, cdc_start_position=start_lsn,
        replication_task_settings=dms.cdc_task_settings(
            control_schema=config.control_schema, validation_threads=config.dms.validation_threads,
            lob_max_size_kb=config.dms.lob_max_size_kb))
    start = DmsStartCdcTaskOperator(task_id="start_cdc_task", aws_conn_id=aws_conn,
                                    replication_task_arn=_mapped_xcom("start_cdc.create_cdc_task"),
                                    cdc_start_position=start_lsn)
    running = DmsTaskRunningSensor(task_id="wait_task_running", aws_conn_id=aws_conn,
                                   replication_task_arn=_mapped_xcom("start_cdc.create_cdc_task"))
    chain(resolve, [source_ep, target_ep], tests, create, start, running)


def _dms_cleanup(config: MigrationConfig, plan: Any):
    """Delete this run's CDC tasks, then their endpoints, then the instance if this migration created it
    and no other task runs on it. Only the run's databases, and only after its cutover completed: the
    migration's other databases keep theirs for their own runs."""
    from operators.dms import (
        DmsCleanupScopeOperator,
        DmsDeleteCdcTaskOperator,
        DmsDeleteEndpointsOperator,
        DmsDeleteReplicationInstanceOperator,
    )

    aws_conn, mid = config.target.aws_conn_id, config.migration_id
    scope = DmsCleanupScopeOperator(task_id="dms_cleanup_scope", plan=plan, cutover_task_id="cutover.switch_over")
    deletes = DmsDeleteCdcTaskOperator.partial(task_id="delete_cdc_task", aws_conn_id=aws_conn).expand(
        replication_task_id=scope.output)
    endpoints = DmsDeleteEndpointsOperator(
        task_id="delete_dms_endpoints", aws_conn_id=aws_conn, endpoint_identifiers=scope.output["endpoint_identifiers"])
    instance = DmsDeleteReplicationInstanceOperator(
        task_id="delete_replication_instance", aws_conn_id=aws_conn,
        replication_instance_identifier=naming.dms_instance_id(mid), migration_id=mid)
    chain(scope, deletes, endpoints, instance)
    return scope


def _aws_cleanup(config: MigrationConfig, parameter_change: Any):
    from operators.aws_cleanup import AwsCleanupOperator

    return AwsCleanupOperator(
        task_id="cleanup_aws", source_aws_conn_id=config.source.aws_conn_id,
        target_aws_conn_id=config.target.aws_conn_id, migration_id=config.migration_id,
        target_account_id=config.target.account_id, share_name=naming.ram_share_name(config.migration_id),
        remove_share=config.initial_load == "aurora_clone", source_kms_key_id=config.source.kms_key_id,
        source_snapshot_identifier=naming.snapshot_id(config.migration_id, "source")
        if config.initial_load == "rds_snapshot" else None,
        parameter_change=parameter_change,
    )


def apply_source_changes_kwargs(item: dict[str, Any]) -> dict[str, Any]:
    """ApplySourceChangesOperator's mapped arguments from one per-database plan entry."""
    return {"database": item["database"], "schemas": item["schemas"]}


def preflight_kwargs(item: dict[str, Any]) -> dict[str, Any]:
    """PreflightOperator's mapped arguments from one per-database plan entry."""
    return {"database": item["database"], "schemas": item["schemas"], "slot_names": [item["slot_name"]]}


def _cutover_group():
    from airflow.sdk import TaskGroup

    return TaskGroup(group_id="cutover", tooltip="Gate, guardrails and the critical section")


def _initial_load(config: MigrationConfig, first_db: str):
    """Tasks of the initial load for this config's path: (first task, clone-ready task, capture task).

    The clone-ready task of every path is `wait_clone_available`; on AWS its XCom carries the
    target's endpoint ({host, port}) that every later task on the target connects to.
    """
    from operators.clone_lsn import CaptureCloneLsnOperator

    tgt = config.target.conn_id
    if config.initial_load == "pg_basebackup":
        from migration.local_clone import clone_logfile
        from operators.local_clone import LocalCloneOperator
        from sensors.clone_available import CloneAvailableSensor

        clone = LocalCloneOperator(task_id="clone_source", source_conn_id=config.source.conn_id,
                                   replication_conn_id=config.source.replication_conn_id,
                                   data_directory=config.target.data_directory,
                                   port=config.target.port or f"{{{{ conn['{tgt}'].port }}}}")
        wait = CloneAvailableSensor(task_id="wait_clone_available", target_conn_id=tgt, dbname=first_db,
                                    poll_interval=1)
        capture = CaptureCloneLsnOperator(task_id="capture_clone_lsn", target_conn_id=tgt, database=first_db,
                                          method="redo_done_at", log_path=str(clone_logfile(config.target.data_directory)))
        clone >> wait
        return clone, wait, capture

    from sensors.aws_rds import AwsDbAvailableSensor

    src_aws, tgt_aws = config.source.aws_conn_id, config.target.aws_conn_id
    endpoint = {"target_host": _xcom("wait_clone_available", "host"),
                "target_port": _xcom("wait_clone_available", "port")}
    if config.initial_load == "aurora_clone":
        from operators.aws_clone import AwsCreateClusterCloneOperator, AwsShareClusterOperator

        share = AwsShareClusterOperator(
            task_id="share_cluster", source_aws_conn_id=src_aws, target_aws_conn_id=tgt_aws,
            migration_id=config.migration_id, source_cluster_identifier=config.source.cluster_identifier,
            target_account_id=config.target.account_id, share_name=naming.ram_share_name(config.migration_id))
        clone = AwsCreateClusterCloneOperator(
            task_id="create_clone", target_aws_conn_id=tgt_aws, migration_id=config.migration_id,
            source_cluster_arn=_xcom("share_cluster", "source_cluster_arn"),
            cluster_identifier=config.target.cluster_identifier,
            writer_instance_identifier=config.target.instance_identifier, kms_key_id=config.target.kms_key_id,
            subnet_group=config.target.subnet_group, security_group_ids=list(config.target.security_group_ids),
            parameter_group=config.target.parameter_group, instance_class=config.target.instance_class)
        wait = AwsDbAvailableSensor(task_id="wait_clone_available", aws_conn_id=tgt_aws, db_type="cluster",
                                    db_identifier=config.target.cluster_identifier,
                                    writer_instance_identifier=_xcom("create_clone", "writer_instance_identifier"))
        # The clone has the source's roles: the target connection carries the same credentials.
        capture = CaptureCloneLsnOperator(task_id="capture_clone_lsn", target_conn_id=tgt, database=first_db,
                                          method="aurora_volume_logical_start_lsn", **endpoint)
        chain(share, clone, wait)
        return share, wait, capture

    from operators.aws_snapshot import (
        AwsCaptureRestoredInstanceLsnOperator,
        AwsCopyDbSnapshotToTargetOperator,
        AwsCreateDbSnapshotOperator,
        AwsRestoreDbInstanceOperator,
    )
    from sensors.aws_rds import AwsDbSnapshotAvailableSensor

    snapshot = AwsCreateDbSnapshotOperator(task_id="create_snapshot", source_aws_conn_id=src_aws,
                                           migration_id=config.migration_id,
                                           instance_identifier=config.source.instance_identifier)
    source_ready = AwsDbSnapshotAvailableSensor(task_id="wait_source_snapshot", aws_conn_id=src_aws,
                                                snapshot_identifier=_xcom("create_snapshot", "snapshot_identifier"))
    copy = AwsCopyDbSnapshotToTargetOperator(
        task_id="copy_snapshot", source_aws_conn_id=src_aws, target_aws_conn_id=tgt_aws,
        migration_id=config.migration_id, target_account_id=config.target.account_id,
        kms_key_id=config.target.kms_key_id, source_snapshot_identifier=_xcom("create_snapshot", "snapshot_identifier"))
    copy_ready = AwsDbSnapshotAvailableSensor(task_id="wait_target_snapshot", aws_conn_id=tgt_aws,
                                              snapshot_identifier=_xcom("copy_snapshot", "snapshot_identifier"))
    restore = AwsRestoreDbInstanceOperator(
        task_id="restore_instance", target_aws_conn_id=tgt_aws, migration_id=config.migration_id,
        instance_identifier=config.target.instance_identifier,
        snapshot_identifier=_xcom("copy_snapshot", "snapshot_identifier"), instance_class=config.target.instance_class,
        subnet_group=config.target.subnet_group, security_group_ids=list(config.target.security_group_ids),
        parameter_group=config.target.parameter_group)
    wait = AwsDbAvailableSensor(task_id="wait_clone_available", aws_conn_id=tgt_aws, db_type="instance",
                                db_identifier=config.target.instance_identifier)
    capture = AwsCaptureRestoredInstanceLsnOperator(
        task_id="capture_clone_lsn", target_aws_conn_id=tgt_aws,
        db_instance_identifier=config.target.instance_identifier, target_conn_id=tgt, database=first_db,
        method="redo_done_at", **endpoint)
    chain(snapshot, source_ready, copy, copy_ready, restore, wait)
    return snapshot, wait, capture


def dag_for_file(dag_file: str) -> DAG:
    """Entry point of the thin files in dags/: the DAG for migrate__<id>.py's own YAML."""
    return build_dag(config_for_dag_file(dag_file))

