"""Phase 2: the initial load of this config's path, then the copied slots dropped and the target prepared."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow.sdk import chain, task_group

from dag_phases.context import BuildContext
from dag_phases.plan import prepare_target_kwargs
from dag_phases.task_ids import (
    CAPTURE_CLONE_LSN,
    COPY_SNAPSHOT,
    CREATE_CLONE,
    CREATE_SNAPSHOT,
    PREPARE_TARGET,
    SHARE_CLUSTER,
    WAIT_CLONE_AVAILABLE,
    xcom,
)
from migration import naming


@dataclass(frozen=True)
class LoadTasks:
    first: Any  # the initial load's first task
    clone_ready: Any  # WAIT_CLONE_AVAILABLE
    capture: Any  # CAPTURE_CLONE_LSN
    drop_slots: Any
    after_drop: list[Any]  # drop_slots, or on AWS the target's logical replication turned off after it
    target_ready: Any  # the mapped prepare_target group


# The logical load's tasks (initial_load: pg_dump).
CREATE_TARGET_ROLES = "create_target_roles"
LOAD_DATABASE = "load_database"
LOAD_SUMMARY = "initial_load_summary"


def logical_load_kwargs(item: dict[str, Any]) -> dict[str, Any]:
    """LogicalLoadOperator's mapped arguments from one per-database plan entry."""
    return {key: item[key] for key in ("database", "schemas", "slot_name")}


def build_load(ctx: BuildContext, plan: Any) -> LoadTasks:
    """The initial load, the slots the clone copied dropped, and the mapped `prepare_target` group."""
    from operators.replication_slot import DropCopiedSlotsOperator

    config = ctx.config
    if config.initial_load == "pg_dump":
        return _logical_load(ctx, plan)
    first, clone_ready, capture = initial_load(ctx)
    drop_slots = DropCopiedSlotsOperator(task_id="drop_copied_slots", target_conn_id=ctx.tgt, source_conn_id=ctx.src,
                                         database=ctx.first_db, target_host=ctx.target_host,
                                         target_port=ctx.target_port)
    after_drop = [drop_slots]
    if ctx.on_aws:
        from operators.aws_clone import RdsSetLogicalReplicationOperator

        logical_off = RdsSetLogicalReplicationOperator(
            task_id="target_logical_replication_off", aws_conn_id=config.target.aws_conn_id,
            db_type=ctx.db_type, db_identifier=ctx.target_identifier, enabled=False,
            parameter_group=config.target.parameter_group)
        drop_slots >> logical_off
        after_drop = [logical_off]
    target_ready = _prepare_target(ctx).expand_kwargs(plan.map(prepare_target_kwargs))
    return LoadTasks(first=first, clone_ready=clone_ready, capture=capture, drop_slots=drop_slots,
                     after_drop=after_drop, target_ready=target_ready)


def _logical_load(ctx: BuildContext, plan: Any) -> LoadTasks:
    """pg_dump path: the existing target (on AWS its endpoint read at run time) gets the roles, then each
    database is loaded at its slot's exported snapshot; no clone, so no copied slots and no LSN to capture.

    On AWS the target's endpoint was read in preflight (`wait_clone_available`, before `preflight_target`).
    In the phases' terms: `first` and `clone_ready` are the roles, `capture` the mapped load (each returns
    its slot's consistent point) and `drop_slots` the summary that ANALYZEs the loaded tables and sums the
    loads up for the report.
    """
    from migration.logical_load import default_jobs
    from operators.logical_load import CreateTargetRolesOperator, LogicalLoadOperator, LogicalLoadSummaryOperator

    config, src, tgt = ctx.config, ctx.src, ctx.tgt
    endpoint = {"target_host": ctx.target_host, "target_port": ctx.target_port}
    roles = CreateTargetRolesOperator(task_id=CREATE_TARGET_ROLES, source_conn_id=src, target_conn_id=tgt,
                                      databases=plan["databases"], schemas=plan["schemas"], **endpoint)
    load = LogicalLoadOperator.partial(
        task_id=LOAD_DATABASE, source_conn_id=src, target_conn_id=tgt, migration_id=config.migration_id,
        control_schema=config.control_schema, jobs=config.logical_load.jobs or default_jobs(),
        dump_root=config.logical_load.dump_directory, wait_for_xacts_s=config.max_transaction_age_seconds, **endpoint,
        plugin=config.dms.plugin if ctx.uses_dms else "pgoutput",
    ).expand_kwargs(plan.map(logical_load_kwargs))
    summary = LogicalLoadSummaryOperator(task_id=LOAD_SUMMARY, target_conn_id=tgt, databases=plan["databases"],
                                         schemas=plan["schemas"], loads=load.output, **endpoint)
    target_ready = _prepare_target(ctx).expand_kwargs(plan.map(prepare_target_kwargs))
    return LoadTasks(first=roles, clone_ready=roles, capture=load, drop_slots=summary, after_drop=[summary],
                     target_ready=target_ready)


def _prepare_target(ctx: BuildContext):
    from operators.target_prep import CreateControlSchemaOperator, DisableTargetTriggersOperator

    config, src, tgt = ctx.config, ctx.src, ctx.tgt
    t_host, t_port = ctx.target_host, ctx.target_port

    @task_group(group_id=PREPARE_TARGET)
    def prepare_target(database, schemas):
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

    return prepare_target


def initial_load(ctx: BuildContext):
    """Tasks of the initial load for this config's path: (first task, clone-ready task, capture task).

    The clone-ready task of every path is `wait_clone_available`; on AWS its XCom carries the
    target's endpoint ({host, port}) that every later task on the target connects to.
    """
    from operators.clone_lsn import CaptureCloneLsnOperator

    config, tgt, first_db = ctx.config, ctx.tgt, ctx.first_db
    if config.initial_load == "pg_basebackup":
        from migration.local_clone import clone_logfile
        from operators.local_clone import LocalCloneOperator
        from sensors.clone_available import CloneAvailableSensor

        clone = LocalCloneOperator(task_id="clone_source", source_conn_id=config.source.conn_id,
                                   replication_conn_id=config.source.replication_conn_id,
                                   data_directory=config.target.data_directory,
                                   port=config.target.port or f"{{{{ conn['{tgt}'].port }}}}")
        wait = CloneAvailableSensor(task_id=WAIT_CLONE_AVAILABLE, target_conn_id=tgt, dbname=first_db,
                                    poll_interval=1)
        capture = CaptureCloneLsnOperator(task_id=CAPTURE_CLONE_LSN, target_conn_id=tgt, database=first_db,
                                          method="redo_done_at",
                                          log_path=str(clone_logfile(config.target.data_directory)))
        clone >> wait
        return clone, wait, capture

    from sensors.aws_rds import RdsDbAvailableSensor

    src_aws, tgt_aws = config.source.aws_conn_id, config.target.aws_conn_id
    endpoint = {"target_host": ctx.target_host, "target_port": ctx.target_port}
    if ctx.is_aurora_clone:
        from operators.aws_clone import RdsCreateClusterCloneOperator, RdsShareClusterOperator

        share = RdsShareClusterOperator(
            task_id=SHARE_CLUSTER, source_aws_conn_id=src_aws, target_aws_conn_id=tgt_aws,
            migration_id=config.migration_id, source_cluster_identifier=config.source.cluster_identifier,
            target_account_id=config.target.account_id, share_name=naming.ram_share_name(config.migration_id))
        clone = RdsCreateClusterCloneOperator(
            task_id=CREATE_CLONE, target_aws_conn_id=tgt_aws, migration_id=config.migration_id,
            source_cluster_arn=xcom(SHARE_CLUSTER, "source_cluster_arn"),
            cluster_identifier=config.target.cluster_identifier,
            writer_instance_identifier=config.target.instance_identifier, kms_key_id=config.target.kms_key_id,
            subnet_group=config.target.subnet_group, security_group_ids=list(config.target.security_group_ids),
            parameter_group=config.target.parameter_group, instance_class=config.target.instance_class)
        wait = RdsDbAvailableSensor(task_id=WAIT_CLONE_AVAILABLE, aws_conn_id=tgt_aws, db_type="cluster",
                                    db_identifier=config.target.cluster_identifier,
                                    writer_instance_identifier=xcom(CREATE_CLONE, "writer_instance_identifier"))
        # The clone has the source's roles: the target connection carries the same credentials.
        capture = CaptureCloneLsnOperator(task_id=CAPTURE_CLONE_LSN, target_conn_id=tgt, database=first_db,
                                          method="aurora_volume_logical_start_lsn", **endpoint)
        chain(share, clone, wait)
        return share, wait, capture

    from operators.aws_snapshot import (
        RdsCaptureRestoredInstanceLsnOperator,
        RdsCopyDbSnapshotToTargetOperator,
        RdsCreateDbSnapshotOperator,
        RdsRestoreDbInstanceOperator,
    )
    from sensors.aws_rds import RdsDbSnapshotAvailableSensor

    snapshot = RdsCreateDbSnapshotOperator(task_id=CREATE_SNAPSHOT, source_aws_conn_id=src_aws,
                                           migration_id=config.migration_id,
                                           instance_identifier=config.source.instance_identifier)
    source_ready = RdsDbSnapshotAvailableSensor(task_id="wait_source_snapshot", aws_conn_id=src_aws,
                                                snapshot_identifier=xcom(CREATE_SNAPSHOT, "snapshot_identifier"))
    copy = RdsCopyDbSnapshotToTargetOperator(
        task_id=COPY_SNAPSHOT, source_aws_conn_id=src_aws, target_aws_conn_id=tgt_aws,
        migration_id=config.migration_id, target_account_id=config.target.account_id,
        kms_key_id=config.target.kms_key_id, source_snapshot_identifier=xcom(CREATE_SNAPSHOT, "snapshot_identifier"))
    copy_ready = RdsDbSnapshotAvailableSensor(task_id="wait_target_snapshot", aws_conn_id=tgt_aws,
                                              snapshot_identifier=xcom(COPY_SNAPSHOT, "snapshot_identifier"))
    restore = RdsRestoreDbInstanceOperator(
        task_id="restore_instance", target_aws_conn_id=tgt_aws, migration_id=config.migration_id,
        instance_identifier=config.target.instance_identifier,
        snapshot_identifier=xcom(COPY_SNAPSHOT, "snapshot_identifier"), instance_class=config.target.instance_class,
        subnet_group=config.target.subnet_group, security_group_ids=list(config.target.security_group_ids),
        parameter_group=config.target.parameter_group)
    wait = RdsDbAvailableSensor(task_id=WAIT_CLONE_AVAILABLE, aws_conn_id=tgt_aws, db_type="instance",
                                db_identifier=config.target.instance_identifier)
    capture = RdsCaptureRestoredInstanceLsnOperator(
        task_id=CAPTURE_CLONE_LSN, target_aws_conn_id=tgt_aws,
        db_instance_identifier=config.target.instance_identifier, target_conn_id=tgt, database=first_db,
        method="redo_done_at", **endpoint)
    chain(snapshot, source_ready, copy, copy_ready, restore, wait)
    return snapshot, wait, capture
