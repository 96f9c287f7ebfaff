"""Phase 3: start change data capture from the clone's LSN, per database, and wait until it is in sync."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow.sdk import chain, task_group

from dag_phases.context import BuildContext
from dag_phases.plan import (
    dms_start_cdc_kwargs,
    dms_wait_in_sync_kwargs,
    native_start_cdc_kwargs,
    native_wait_in_sync_kwargs,
)
from dag_phases.task_ids import (
    CAPTURE_CLONE_LSN,
    CREATE_CDC_TASK,
    ENSURE_REPLICATION_INSTANCE,
    ENSURE_SOURCE_ENDPOINT,
    ENSURE_TARGET_ENDPOINT,
    RESOLVE_START_LSN,
    START_CDC,
    WAIT_IN_SYNC,
    WAIT_VALIDATION_CLEAN,
    in_group,
    mapped_xcom,
    xcom,
)
from migration import naming


@dataclass(frozen=True)
class CdcTasks:
    before_cdc: list[Any]  # DMS: the replication instance
    cdc_started: Any  # the mapped start_cdc group
    in_sync: Any  # the mapped wait_in_sync group
    validation_results: Any  # the mapped validation sensors' results, in the order of the run's databases


def build_cdc(ctx: BuildContext, plan: Any) -> CdcTasks:
    """The DMS replication instance (DMS only), the mapped `start_cdc` and `wait_in_sync` groups."""
    before_cdc = []
    if ctx.uses_dms:
        before_cdc.append(_ensure_replication_instance(ctx))
        cdc_started = _dms_start_cdc(ctx).expand_kwargs(plan.map(dms_start_cdc_kwargs))
        in_sync = _dms_wait_in_sync(ctx).expand_kwargs(plan.map(dms_wait_in_sync_kwargs))
    else:
        cdc_started = _native_start_cdc(ctx).expand_kwargs(plan.map(native_start_cdc_kwargs))
        in_sync = _native_wait_in_sync(ctx).expand_kwargs(plan.map(native_wait_in_sync_kwargs))
    return CdcTasks(before_cdc=before_cdc, cdc_started=cdc_started, in_sync=in_sync,
                    validation_results=in_sync.get_child_by_label(WAIT_VALIDATION_CLEAN).output)


def _ensure_replication_instance(ctx: BuildContext):
    from operators.dms import DmsEnsureReplicationInstanceOperator

    config = ctx.config
    return DmsEnsureReplicationInstanceOperator(
        task_id=ENSURE_REPLICATION_INSTANCE, aws_conn_id=config.target.aws_conn_id,
        migration_id=config.migration_id, replication_instance_identifier=naming.dms_instance_id(config.migration_id),
        replication_instance_arn=config.dms.replication_instance_arn, instance_class=config.dms.instance_class,
        allocated_storage_gb=config.dms.allocated_storage_gb, subnet_group=config.dms.subnet_group,
        security_group_ids=list(config.dms.security_group_ids), multi_az=config.dms.multi_az)


def _native_start_cdc(ctx: BuildContext):
    from operators.native_cdc import CreateSubscriptionOperator

    config = ctx.config
    captured_lsn = xcom(CAPTURE_CLONE_LSN, "lsn")

    @task_group(group_id=START_CDC)
    def start_cdc(database, slot_name, publication, subscription):
        """Start change data capture from exactly the clone's LSN, per database."""
        # "redo done at" names the last record the clone has; Aurora's function names the first it lacks.
        boundary = {"origin_lsn": captured_lsn} if ctx.is_aurora_clone else {"captured_lsn": captured_lsn}
        if config.initial_load == "pg_dump":
            # A logical load: this database's slot's consistent point, where its dump's snapshot ends.
            from dag_phases.load import LOAD_DATABASE

            boundary = {"origin_lsn": mapped_xcom(LOAD_DATABASE, "consistent_point")}
        CreateSubscriptionOperator(task_id="create_subscription", source_conn_id=ctx.src, target_conn_id=ctx.tgt,
                                   database=database, subscription=subscription, publication=publication,
                                   slot_name=slot_name, target_host=ctx.target_host, target_port=ctx.target_port,
                                   replication_conn_id=config.source.replication_conn_id,
                                   # Local platform: the clone's (or the existing target's) data directory.
                                   passfile_directory=None if ctx.on_aws else config.target.data_directory,
                                   **boundary)

    return start_cdc


def _dms_start_cdc(ctx: BuildContext):
    from migration.dms import requests as dms
    from operators.clone_lsn import ResolveCdcStartLsnOperator
    from operators.dms import (
        DmsCreateCdcTaskOperator,
        DmsEnsurePostgresEndpointOperator,
        DmsStartCdcTaskOperator,
        DmsTestConnectionOperator,
    )
    from sensors.dms import DmsTaskRunningSensor

    config = ctx.config
    aws_conn = config.target.aws_conn_id
    instance_arn = xcom(ENSURE_REPLICATION_INSTANCE, "arn")
    source_endpoint_arn = mapped_xcom(in_group(START_CDC, ENSURE_SOURCE_ENDPOINT), "arn")
    target_endpoint_arn = mapped_xcom(in_group(START_CDC, ENSURE_TARGET_ENDPOINT), "arn")
    task_arn = mapped_xcom(in_group(START_CDC, CREATE_CDC_TASK))
    start_lsn = mapped_xcom(in_group(START_CDC, RESOLVE_START_LSN), "start_lsn")

    @task_group(group_id=START_CDC)
    def start_cdc(database, slot_name, dms_task_id, dms_source_endpoint, dms_target_endpoint, dms_source_settings,
                  dms_table_mappings):
        """Start change data capture from exactly the clone's LSN, per database."""
        # DMS: start LSN in the slot, endpoints, connection tests, the CDC-only task, running.
        boundary = {"captured_lsn": xcom(CAPTURE_CLONE_LSN, "lsn"), "capture_method": xcom(CAPTURE_CLONE_LSN, "method")}
        if config.initial_load == "pg_dump":
            # A logical load: this database's slot's consistent point, the first position its dump lacks.
            from dag_phases.load import LOAD_DATABASE

            boundary = {"captured_lsn": mapped_xcom(LOAD_DATABASE, "consistent_point"),
                        "capture_method": "slot_consistent_point"}
        resolve = ResolveCdcStartLsnOperator(
            task_id=RESOLVE_START_LSN, source_conn_id=config.source.conn_id, database=database, slot_name=slot_name,
            aws_conn_id=aws_conn, replication_task_id=dms_task_id, **boundary)
        source_ep = DmsEnsurePostgresEndpointOperator(
            task_id=ENSURE_SOURCE_ENDPOINT, aws_conn_id=aws_conn, endpoint_identifier=dms_source_endpoint,
            endpoint_type="source", database=database, postgres_conn_id=config.source.conn_id,
            postgresql_settings=dms_source_settings, migration_id=config.migration_id)
        target_ep = DmsEnsurePostgresEndpointOperator(
            task_id=ENSURE_TARGET_ENDPOINT, aws_conn_id=aws_conn, endpoint_identifier=dms_target_endpoint,
            endpoint_type="target", database=database, postgres_conn_id=config.target.conn_id,
            host=ctx.target_host, port=ctx.target_port,
            postgresql_settings=dms.target_postgres_settings(
                session_replication_role_replica=config.dms.session_replication_role_replica),
            migration_id=config.migration_id, source_conn_id=config.source.conn_id)
        tests = [DmsTestConnectionOperator(task_id=f"test_{side}_connection", aws_conn_id=aws_conn,
                                           replication_instance_arn=instance_arn, endpoint_arn=endpoint_arn)
                 for side, endpoint_arn in (("source", source_endpoint_arn), ("target", target_endpoint_arn))]
        create = DmsCreateCdcTaskOperator(
            task_id=CREATE_CDC_TASK, aws_conn_id=aws_conn, replication_task_id=dms_task_id,
            source_endpoint_arn=source_endpoint_arn, target_endpoint_arn=target_endpoint_arn,
            replication_instance_arn=instance_arn, table_mappings=dms_table_mappings, cdc_start_position=start_lsn,
            replication_task_settings=dms.cdc_task_settings(
                control_schema=config.control_schema, validation_threads=config.dms.validation_threads,
                lob_max_size_kb=config.dms.lob_max_size_kb))
        start = DmsStartCdcTaskOperator(task_id="start_cdc_task", aws_conn_id=aws_conn,
                                        replication_task_arn=task_arn, cdc_start_position=start_lsn)
        running = DmsTaskRunningSensor(task_id="wait_task_running", aws_conn_id=aws_conn,
                                       replication_task_arn=task_arn, poke_interval=config.dms.poll_interval_seconds)
        chain(resolve, [source_ep, target_ep], tests, create, start, running)

    return start_cdc


def _native_wait_in_sync(ctx: BuildContext):
    from sensors.cdc_lag import CdcLagSensor
    from sensors.validation import ValidationCleanSensor

    config, src, tgt = ctx.config, ctx.src, ctx.tgt
    t_host, t_port = ctx.target_host, ctx.target_port

    @task_group(group_id=WAIT_IN_SYNC)
    def wait_in_sync(database, schemas, slot_name, subscription):
        """Deferred waits: CDC lag under the limit, then a clean validation, per database."""
        lag = CdcLagSensor(task_id="wait_cdc_lag", source_conn_id=src, target_conn_id=tgt, database=database,
                           slot_name=slot_name, subscription=subscription,
                           max_lag_bytes=config.cutover.max_lag_bytes,
                           max_apply_age_seconds=config.cutover.max_apply_age_seconds,
                           control_schema=config.control_schema, target_host=t_host, target_port=t_port,
                           schemas=schemas, poll_interval=2)
        clean = ValidationCleanSensor(task_id=WAIT_VALIDATION_CLEAN, source_conn_id=src, target_conn_id=tgt,
                                      database=database, schemas=schemas, validation_id=config.migration_id,
                                      control_schema=config.control_schema,
                                      chunk_rows=config.validation.chunk_rows,
                                      max_rechecks=config.validation.max_rechecks, slot_name=slot_name,
                                      target_host=t_host, target_port=t_port, poll_interval=2)
        lag >> clean

    return wait_in_sync


def _dms_wait_in_sync(ctx: BuildContext):
    from sensors.dms import DmsCdcLatencySensor, DmsValidationSensor

    config = ctx.config
    aws_conn = config.target.aws_conn_id
    task_arn = mapped_xcom(in_group(START_CDC, CREATE_CDC_TASK))

    @task_group(group_id=WAIT_IN_SYNC)
    def wait_in_sync(database, slot_name):
        """Deferred waits: CDC lag under the limit, then a clean validation, per database."""
        lag = DmsCdcLatencySensor(
            task_id="wait_cdc_lag", aws_conn_id=aws_conn, replication_task_arn=task_arn,
            replication_instance_id=xcom(ENSURE_REPLICATION_INSTANCE, "identifier"), source_conn_id=ctx.src,
            database=database, slot_name=slot_name, max_latency_seconds=config.dms.max_latency_seconds,
            consecutive_datapoints=config.dms.consecutive_datapoints,
            max_slot_lag_bytes=config.cutover.max_lag_bytes, poll_interval=config.dms.poll_interval_seconds)
        clean = DmsValidationSensor(
            task_id=WAIT_VALIDATION_CLEAN, aws_conn_id=aws_conn, replication_task_arn=task_arn,
            target_conn_id=ctx.tgt, database=database, control_schema=config.control_schema,
            target_host=ctx.target_host, target_port=ctx.target_port, poll_interval=config.dms.poll_interval_seconds,
            source_conn_id=ctx.src, slot_name=slot_name)
        lag >> clean

    return wait_in_sync
