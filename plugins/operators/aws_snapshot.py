"""RDS snapshot path: snapshot the source, share it, copy it into the target account with the
target's key, restore the target instance, and capture its LSN from the instance log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from connections.aws import aws_client, rds_log_reader
from migration.aws.common import AwsMigrationError, check_account_id
from migration.aws.sharing import grant_key_to_account, kms_statement_sid
from migration.aws.snapshot import (
    ensure_db_snapshot,
    ensure_instance_from_snapshot,
    ensure_snapshot_copy,
    share_db_snapshot,
    snapshot_available,
)
from migration.capture import LogReader
from migration.naming import snapshot_id
from operators.clone_lsn import CaptureCloneLsnOperator
from operators.xcom_args import as_list


def source_snapshot_identifier(migration_id: str) -> str:
    return snapshot_id(migration_id, "source")


def target_snapshot_identifier(migration_id: str) -> str:
    return snapshot_id(migration_id, "target")


class RdsCreateDbSnapshotOperator(BaseOperator):
    """Take a manual snapshot of the source RDS instance (found again on rerun).

    It does not wait: RdsDbSnapshotAvailableSensor does, deferred. (The provider's
    RdsCreateDbSnapshotOperator waits in the worker and fails on rerun when the snapshot exists.)
    Returns ``{snapshot_identifier, snapshot_arn, status, encrypted, kms_key_id, created}``.
    """

    template_fields: Sequence[str] = ("source_aws_conn_id", "instance_identifier", "snapshot_identifier")
    ui_color = "#fff2cc"

    def __init__(self, *, source_aws_conn_id: str, migration_id: str, instance_identifier: str,
                 snapshot_identifier: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.source_aws_conn_id = source_aws_conn_id
        self.migration_id = migration_id
        self.instance_identifier = instance_identifier
        self.snapshot_identifier = snapshot_identifier

    def execute(self, context: Context) -> dict[str, Any]:
        return ensure_db_snapshot(
            aws_client(self.source_aws_conn_id, "rds"), migration_id=self.migration_id,
            instance_identifier=self.instance_identifier,
            snapshot_identifier=self.snapshot_identifier or source_snapshot_identifier(self.migration_id))


class RdsCopyDbSnapshotToTargetOperator(BaseOperator):
    """Share the (available) source snapshot with the target account, let that account use the
    source KMS key (one key-policy statement), and copy the snapshot in the target account,
    re-encrypted with ``kms_key_id`` (the target's key). It does not wait for the copy.
    Returns ``{source_snapshot_arn, snapshot_identifier, snapshot_arn, status, kms_statement_sid, created}``.
    """

    template_fields: Sequence[str] = ("source_aws_conn_id", "target_aws_conn_id", "source_snapshot_identifier",
                                      "target_account_id", "snapshot_identifier", "kms_key_id")
    ui_color = "#fff2cc"

    def __init__(self, *, source_aws_conn_id: str, target_aws_conn_id: str, migration_id: str,
                 target_account_id: str, kms_key_id: str | None, source_snapshot_identifier: str | None = None,
                 snapshot_identifier: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.source_aws_conn_id = source_aws_conn_id
        self.target_aws_conn_id = target_aws_conn_id
        self.migration_id = migration_id
        self.target_account_id = target_account_id
        self.kms_key_id = kms_key_id
        self.source_snapshot_identifier = source_snapshot_identifier
        self.snapshot_identifier = snapshot_identifier

    def execute(self, context: Context) -> dict[str, Any]:
        account = check_account_id(self.target_account_id, field="target_account_id")
        source_id = self.source_snapshot_identifier or source_snapshot_identifier(self.migration_id)
        source_rds = aws_client(self.source_aws_conn_id, "rds")
        ready, state = snapshot_available(source_rds, snapshot_identifier=source_id)
        if not ready:
            raise AwsMigrationError(f"source snapshot {source_id} is {state['status']!r}, not available: wait for it "
                               f"(RdsDbSnapshotAvailableSensor) before copying")
        share_db_snapshot(source_rds, snapshot_identifier=source_id, account_id=account)
        sid = None
        if state["encrypted"] and state["kms_key_id"]:
            grant_key_to_account(aws_client(self.source_aws_conn_id, "kms"), key_id=state["kms_key_id"],
                                 account_id=account)
            sid = kms_statement_sid(account)
        copy = ensure_snapshot_copy(
            aws_client(self.target_aws_conn_id, "rds"), migration_id=self.migration_id,
            source_snapshot_arn=state["snapshot_arn"],
            snapshot_identifier=self.snapshot_identifier or target_snapshot_identifier(self.migration_id),
            kms_key_id=self.kms_key_id or None)
        return {"source_snapshot_arn": state["snapshot_arn"], **copy, "kms_statement_sid": sid}


class RdsRestoreDbInstanceOperator(BaseOperator):
    """Restore the target RDS instance from the snapshot copy (found again on rerun); it does not
    wait: RdsDbAvailableSensor does. Returns ``{instance_identifier, instance_arn, status, created}``.
    """

    template_fields: Sequence[str] = ("target_aws_conn_id", "instance_identifier", "snapshot_identifier",
                                      "instance_class", "subnet_group", "security_group_ids", "parameter_group")
    ui_color = "#fff2cc"

    def __init__(self, *, target_aws_conn_id: str, migration_id: str, instance_identifier: str,
                 snapshot_identifier: str | None = None, instance_class: str | None = None,
                 subnet_group: str | None = None, security_group_ids: Sequence[str] = (),
                 parameter_group: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.target_aws_conn_id = target_aws_conn_id
        self.migration_id = migration_id
        self.instance_identifier = instance_identifier
        self.snapshot_identifier = snapshot_identifier
        self.instance_class = instance_class
        self.subnet_group = subnet_group
        self.security_group_ids = security_group_ids
        self.parameter_group = parameter_group

    def execute(self, context: Context) -> dict[str, Any]:
        return ensure_instance_from_snapshot(
            aws_client(self.target_aws_conn_id, "rds"), migration_id=self.migration_id,
            instance_identifier=self.instance_identifier,
            snapshot_identifier=self.snapshot_identifier or target_snapshot_identifier(self.migration_id),
            instance_class=self.instance_class or None, subnet_group=self.subnet_group or None,
            security_group_ids=as_list(self.security_group_ids, field="security_group_ids"),
            parameter_group=self.parameter_group or None)


class RdsCaptureRestoredInstanceLsnOperator(CaptureCloneLsnOperator):
    """CaptureCloneLsnOperator for a restored RDS instance: the log reader downloads the instance's
    log files (all portions) with the target AWS connection, so "redo done at X/Y" is parsed by the
    same code as a local clone's log. Connects to ``target_host``/``target_port`` (the endpoint
    from RdsDbAvailableSensor) with ``target_conn_id``'s credentials. Returns ``{lsn, method}``.
    """

    template_fields: Sequence[str] = (*CaptureCloneLsnOperator.template_fields, "target_aws_conn_id",
                                      "db_instance_identifier")

    def __init__(self, *, target_aws_conn_id: str, db_instance_identifier: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.target_aws_conn_id = target_aws_conn_id
        self.db_instance_identifier = db_instance_identifier

    def log_reader(self, context: Context) -> LogReader | None:
        return rds_log_reader(self.target_aws_conn_id, self.db_instance_identifier)
