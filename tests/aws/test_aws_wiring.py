"""The AWS tasks wired the way a DAG factory wires them (small XComs, templated arguments), and the
DAG serialized and read back as the scheduler does: nothing in their arguments blocks that.

Stand-ins: none (no AWS call is made).
"""

from __future__ import annotations

import pendulum
import pytest

from migration.naming import ram_share_name
from operators.aws_cleanup import AwsCleanupOperator
from operators.aws_clone import AwsCreateClusterCloneOperator, AwsSetLogicalReplicationOperator, AwsShareClusterOperator
from operators.aws_cutover import AwsRestoreSourceWritesOperator, AwsStopSourceOperator, AwsSwitchDnsOperator
from operators.aws_preflight import AwsPreflightOperator
from operators.aws_snapshot import (
    AwsCaptureRestoredInstanceLsnOperator,
    AwsCopyDbSnapshotToTargetOperator,
    AwsCreateDbSnapshotOperator,
    AwsRestoreDbInstanceOperator,
)
from operators.clone_lsn import CaptureCloneLsnOperator
from sensors.aws_dns import AwsDnsChangeInSyncSensor
from sensors.aws_rds import AwsDbAvailableSensor, AwsDbSnapshotAvailableSensor

pytestmark = pytest.mark.aws

SRC, TGT = "aws_source", "aws_target"


def xcom(task_id: str, key: str) -> str:
    return f"{{{{ ti.xcom_pull(task_ids='{task_id}')['{key}'] }}}}"


def aurora_tasks() -> list:
    preflight = AwsPreflightOperator(
        task_id="preflight_aws", source_aws_conn_id=SRC, target_aws_conn_id=TGT, migration_id="orders",
        db_type="cluster", source_identifier="orders-src", source_kms_key_id="alias/orders-src",
        target_kms_key_id="alias/orders-tgt", target_identifier="orders-tgt", target_parameter_group="tgt-params",
        set_logical_replication=False, source_postgres_conn_id="orders_source", database="orders")
    share = AwsShareClusterOperator(task_id="share_cluster", source_aws_conn_id=SRC, target_aws_conn_id=TGT,
                                    migration_id="orders", source_cluster_identifier="orders-src",
                                    target_account_id="222222222222")
    clone = AwsCreateClusterCloneOperator(
        task_id="create_clone", target_aws_conn_id=TGT, migration_id="orders",
        source_cluster_arn=xcom("share_cluster", "source_cluster_arn"), cluster_identifier="orders-tgt",
        kms_key_id="alias/orders-tgt", subnet_group="tgt-subnets", security_group_ids=["sg-0123abcd"],
        parameter_group="tgt-params", instance_class="db.r6g.large")
    wait = AwsDbAvailableSensor(task_id="wait_clone_available", aws_conn_id=TGT, db_type="cluster",
                                db_identifier="orders-tgt",
                                writer_instance_identifier=xcom("create_clone", "writer_instance_identifier"))
    capture = CaptureCloneLsnOperator(task_id="capture_clone_lsn", target_conn_id="orders_source", database="orders",
                                      target_host=xcom("wait_clone_available", "host"),
                                      target_port=xcom("wait_clone_available", "port"),
                                      method="aurora_volume_logical_start_lsn")
    lr_off = AwsSetLogicalReplicationOperator(task_id="target_logical_replication_off", aws_conn_id=TGT,
                                              db_type="cluster", db_identifier="orders-tgt", enabled=False)
    dns = AwsSwitchDnsOperator(task_id="switch_dns", aws_conn_id=TGT, hosted_zone_id="Z0123",
                               record_name="orders-db.example.com", target_host=xcom("wait_clone_available", "host"))
    dns_wait = AwsDnsChangeInSyncSensor(task_id="wait_dns", aws_conn_id=TGT, change_id=xcom("switch_dns", "change_id"))
    restore = AwsRestoreSourceWritesOperator(task_id="restore_source_writes", source_aws_conn_id=SRC,
                                             revoked="{{ ti.xcom_pull(task_ids='switch_over', key='revoked') }}",
                                             trigger_rule="one_failed")
    stop = AwsStopSourceOperator(task_id="stop_source", source_aws_conn_id=SRC, db_type="cluster",
                                 db_identifier="orders-src")
    cleanup = AwsCleanupOperator(task_id="cleanup_aws", source_aws_conn_id=SRC, target_aws_conn_id=TGT,
                                 migration_id="orders", target_account_id="222222222222",
                                 source_kms_key_id="alias/orders-src", share_name=ram_share_name("orders"),
                                 parameter_change="{{ ti.xcom_pull(task_ids='target_logical_replication_off') }}")
    preflight >> share >> clone >> wait >> capture >> lr_off >> dns >> dns_wait >> stop >> cleanup
    dns >> restore
    return [preflight, share, clone, wait, capture, lr_off, dns, dns_wait, restore, stop, cleanup]


def rds_tasks() -> list:
    snap = AwsCreateDbSnapshotOperator(task_id="create_snapshot", source_aws_conn_id=SRC, migration_id="billing",
                                       instance_identifier="billing-src")
    snap_wait = AwsDbSnapshotAvailableSensor(task_id="wait_source_snapshot", aws_conn_id=SRC,
                                             snapshot_identifier=xcom("create_snapshot", "snapshot_identifier"))
    copy = AwsCopyDbSnapshotToTargetOperator(task_id="copy_snapshot", source_aws_conn_id=SRC, target_aws_conn_id=TGT,
                                             migration_id="billing", target_account_id="222222222222",
                                             kms_key_id="alias/billing-tgt")
    copy_wait = AwsDbSnapshotAvailableSensor(task_id="wait_snapshot_copy", aws_conn_id=TGT,
                                             snapshot_identifier=xcom("copy_snapshot", "snapshot_identifier"))
    restore = AwsRestoreDbInstanceOperator(task_id="restore_instance", target_aws_conn_id=TGT, migration_id="billing",
                                           instance_identifier="billing-tgt", parameter_group="tgt-db-params")
    wait = AwsDbAvailableSensor(task_id="wait_instance_available", aws_conn_id=TGT, db_type="instance",
                                db_identifier="billing-tgt")
    capture = AwsCaptureRestoredInstanceLsnOperator(
        task_id="capture_clone_lsn", target_conn_id="billing_target", database="billing",
        target_host=xcom("wait_instance_available", "host"), target_port=xcom("wait_instance_available", "port"),
        method="redo_done_at", target_aws_conn_id=TGT, db_instance_identifier="billing-tgt")
    cleanup = AwsCleanupOperator(task_id="cleanup_aws", source_aws_conn_id=SRC, target_aws_conn_id=TGT,
                                 migration_id="billing", target_account_id="222222222222", remove_share=False,
                                 source_kms_key_id="alias/billing-src",
                                 source_snapshot_identifier=xcom("create_snapshot", "snapshot_identifier"))
    snap >> snap_wait >> copy >> copy_wait >> restore >> wait >> capture >> cleanup
    return [snap, snap_wait, copy, copy_wait, restore, wait, capture, cleanup]


@pytest.mark.parametrize("build", [aurora_tasks, rds_tasks], ids=["aurora_clone", "rds_snapshot"])
def test_aws_tasks_wire_and_survive_serialization(build):
    from airflow.sdk import DAG
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG(f"aws_wiring_{build.__name__}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
             render_template_as_native_obj=True) as dag:
        tasks = build()
    restored = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    assert set(restored.task_ids) == {t.task_id for t in tasks}
    for task in tasks:
        copy = restored.get_task(task.task_id)
        assert tuple(copy.template_fields) == tuple(task.template_fields)
        for name in task.template_fields:
            value = getattr(task, name)
            assert getattr(copy, name) == (list(value) if isinstance(value, tuple) else value), f"{task.task_id}.{name}"
    cleanup = restored.get_task("cleanup_aws")
    assert cleanup.trigger_rule == "all_done"
