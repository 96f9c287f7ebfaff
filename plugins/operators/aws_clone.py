"""Aurora clone path: share the source cluster with the target account, clone it there, and set
the target's logical replication (the last also serves the RDS snapshot path).

The AWS operators (``operators/aws_*.py``) are BaseOperators with clients from
``connections.aws.aws_client``, not AwsBaseOperator: the reason is in ``connections/aws.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from connections.aws import aws_client
from migration.aws.clone import ensure_cluster_clone, ensure_cluster_writer, writer_can_be_added
from migration.aws.common import check_account_id, check_db_type, db_kind, require_db
from migration.aws.parameters import LOGICAL_REPLICATION, reboot_writer, set_parameter, wait_until_pending_reboot
from migration.aws.sharing import accept_resource_share, ensure_resource_share, grant_key_to_account, kms_statement_sid
from migration.naming import aws_name, ram_share_name
from operators.xcom_args import as_list
from triggers.poll import PollTrigger


def writer_identifier(cluster_identifier: str) -> str:
    """The clone's writer instance id when none is configured: derived from the cluster's."""
    return aws_name(cluster_identifier, "writer")


class RdsShareClusterOperator(BaseOperator):
    """Share the source Aurora cluster with the target account, accept the share there, and let
    the target account use the cluster's KMS key.

    RAM share named ``share_name`` (default: naming.ram_share_name(migration_id)), found again on
    rerun; the invitation accepted with the target connection (or ASSOCIATED inside one
    organization), waited for up to ``invitation_wait_seconds`` since it can lag the share by
    seconds; one key-policy statement with a fixed Sid per target account, never
    duplicated. Returns ``{share_arn, share_name, invitation, source_cluster_arn,
    source_kms_key_arn, kms_statement_sid, kms_policy_changed}``.
    """

    template_fields: Sequence[str] = ("source_aws_conn_id", "target_aws_conn_id", "source_cluster_identifier",
                                      "target_account_id", "share_name")
    ui_color = "#fff2cc"

    def __init__(self, *, source_aws_conn_id: str, target_aws_conn_id: str, migration_id: str,
                 source_cluster_identifier: str, target_account_id: str, share_name: str | None = None,
                 invitation_wait_seconds: float = 120.0, invitation_poll_interval: float = 5.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.invitation_wait_seconds = invitation_wait_seconds
        self.invitation_poll_interval = invitation_poll_interval
        self.source_aws_conn_id = source_aws_conn_id
        self.target_aws_conn_id = target_aws_conn_id
        self.migration_id = migration_id
        self.source_cluster_identifier = source_cluster_identifier
        self.target_account_id = target_account_id
        self.share_name = share_name

    def execute(self, context: Context) -> dict[str, Any]:
        account = check_account_id(self.target_account_id, field="target_account_id")
        cluster = require_db(aws_client(self.source_aws_conn_id, "rds"), db_type="cluster",
                             identifier=self.source_cluster_identifier, field="source.cluster_identifier")
        name = self.share_name or ram_share_name(self.migration_id)
        share_arn = ensure_resource_share(aws_client(self.source_aws_conn_id, "ram"), name=name,
                                          resource_arn=cluster.arn, principal=account)
        invitation = accept_resource_share(aws_client(self.target_aws_conn_id, "ram"), share_arn=share_arn,
                                           wait_seconds=self.invitation_wait_seconds,
                                           poll_interval=self.invitation_poll_interval)
        changed = False
        if cluster.kms_key_id:
            changed = grant_key_to_account(aws_client(self.source_aws_conn_id, "kms"), key_id=cluster.kms_key_id,
                                           account_id=account)
        self.log.info("Cluster %s shared as %s (%s); key policy %s", cluster.arn, share_arn, invitation,
                      "updated" if changed else "unchanged")
        return {"share_arn": share_arn, "share_name": name, "invitation": invitation,
                "source_cluster_arn": cluster.arn, "source_kms_key_arn": cluster.kms_key_id,
                "kms_statement_sid": kms_statement_sid(account) if cluster.kms_key_id else None,
                "kms_policy_changed": changed}


class RdsCreateClusterCloneOperator(BaseOperator):
    """Clone the shared source cluster in the target account (copy-on-write, latest restorable
    time, the target's KMS key, subnet group, security groups and parameter group) and add the
    writer instance; a rerun finds both by identifier (and refuses same-named resources it did not
    make). A just-accepted share can take a while to reach RDS, which until then answers
    DBClusterNotFoundFault as for a missing cluster: the restore is retried for up to
    ``share_retry_seconds``, then fails saying so. AWS accepts the writer only once the restored
    cluster is available, so the task waits (deferred) for that between the two. Returns ``{cluster_identifier,
    cluster_arn,
    writer_instance_identifier, created}``.
    """

    template_fields: Sequence[str] = ("target_aws_conn_id", "source_cluster_arn", "cluster_identifier",
                                      "writer_instance_identifier", "kms_key_id", "subnet_group",
                                      "security_group_ids", "parameter_group", "instance_class")
    ui_color = "#fff2cc"

    def __init__(self, *, target_aws_conn_id: str, migration_id: str, source_cluster_arn: str,
                 cluster_identifier: str, writer_instance_identifier: str | None = None,
                 kms_key_id: str | None = None, subnet_group: str | None = None,
                 security_group_ids: Sequence[str] = (), parameter_group: str | None = None,
                 instance_class: str | None = None,
                 poll_interval: float = 30.0, wait_timeout: float = 3600.0, share_retry_seconds: float = 300.0,
                 share_retry_interval: float = 15.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.share_retry_seconds = share_retry_seconds
        self.share_retry_interval = share_retry_interval
        self.target_aws_conn_id = target_aws_conn_id
        self.migration_id = migration_id
        self.source_cluster_arn = source_cluster_arn
        self.cluster_identifier = cluster_identifier
        self.writer_instance_identifier = writer_instance_identifier
        self.kms_key_id = kms_key_id
        self.subnet_group = subnet_group
        self.security_group_ids = security_group_ids
        self.parameter_group = parameter_group
        self.instance_class = instance_class
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout

    def _writer_id(self) -> str:
        return self.writer_instance_identifier or writer_identifier(self.cluster_identifier)

    def execute(self, context: Context) -> dict[str, Any]:
        rds = aws_client(self.target_aws_conn_id, "rds")
        clone = ensure_cluster_clone(
            rds, migration_id=self.migration_id, cluster_identifier=self.cluster_identifier,
            source_cluster_arn=self.source_cluster_arn, kms_key_id=self.kms_key_id or None,
            subnet_group=self.subnet_group or None,
            security_group_ids=as_list(self.security_group_ids, field="security_group_ids"),
            parameter_group=self.parameter_group or None, not_found_retry_seconds=self.share_retry_seconds,
            retry_interval=self.share_retry_interval)
        ready, status = writer_can_be_added(rds, cluster_identifier=self.cluster_identifier,
                                            instance_identifier=self._writer_id())
        if not ready:
            self.log.info("Clone %s is %s: waiting until it is available to add its writer", clone["cluster_arn"],
                          status)
            self.defer(
                trigger=PollTrigger(
                    check="triggers.checks:poll_rds_db_available",
                    kwargs={"aws_conn_id": self.target_aws_conn_id, "db_type": "cluster",
                            "identifier": self.cluster_identifier},
                    poke_interval=self.poll_interval, timeout=self.wait_timeout),
                method_name="execute_complete",
                kwargs={"clone": clone},
                timeout=timedelta(seconds=self.wait_timeout),
            )
        return self._add_writer(rds, clone)

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None,
                         clone: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or event.get("status") != "success":
            raise AirflowException(f"{self.task_id}: waiting for clone {self.cluster_identifier} to be available "
                                   f"failed: {(event or {}).get('message', event)}")
        # The deferral's kwargs are a convenience only: the writer step reads the cluster again.
        return self._add_writer(aws_client(self.target_aws_conn_id, "rds"), clone or {})

    def _add_writer(self, rds: Any, clone: dict[str, Any]) -> dict[str, Any]:
        writer_id = self._writer_id()
        writer = ensure_cluster_writer(
            rds, migration_id=self.migration_id, cluster_identifier=self.cluster_identifier,
            instance_identifier=writer_id, instance_class=self.instance_class or None)
        self.log.info("Clone %s (%s) with writer %s (%s)", writer["cluster_arn"],
                      "created" if clone.get("created") else "found", writer_id,
                      "created" if writer["created"] else "found")
        return {"cluster_identifier": self.cluster_identifier, "cluster_arn": writer["cluster_arn"],
                "writer_instance_identifier": writer_id,
                "created": bool(clone.get("created")) or writer["created"]}


class RdsSetLogicalReplicationOperator(BaseOperator):
    """Set rds.logical_replication in a cluster's or instance's parameter group (default: the one it
    uses), wait until RDS reports the writer 'pending-reboot' (a reboot while the change is still
    'applying' would not apply it), reboot the writer and wait (deferred) until the change is in sync.

    On the target, run it after the copied slots are dropped: PostgreSQL refuses to start with
    logical slots present and logical decoding off. Returns ``{db_type, db_identifier,
    parameter_group, parameter, previous, value, rebooted}``.
    """

    template_fields: Sequence[str] = ("aws_conn_id", "db_identifier", "parameter_group")
    ui_color = "#fff2cc"

    def __init__(self, *, aws_conn_id: str, db_type: str, db_identifier: str, enabled: bool,
                 parameter_group: str | None = None, reboot: bool = True, poll_interval: float = 15.0,
                 wait_timeout: float = 3600.0, pending_reboot_timeout: float = 600.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.pending_reboot_timeout = pending_reboot_timeout
        self.aws_conn_id = aws_conn_id
        self.db_type = check_db_type(db_type)
        self.db_identifier = db_identifier
        self.enabled = enabled
        self.parameter_group = parameter_group
        self.reboot = reboot
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout

    def execute(self, context: Context) -> dict[str, Any]:
        rds = aws_client(self.aws_conn_id, "rds")
        desc = require_db(rds, db_type=self.db_type, identifier=self.db_identifier, field="db_identifier")
        group = self.parameter_group or desc.parameter_group
        if not group:
            raise AirflowException(f"{self.db_identifier} has no parameter group to change: name one")
        value = "1" if self.enabled else "0"
        previous = set_parameter(rds, db_type=self.db_type, parameter_group=group, name=LOGICAL_REPLICATION,
                                 value=value)
        change = {"db_type": self.db_type, "db_identifier": self.db_identifier, "parameter_group": group,
                  "parameter": LOGICAL_REPLICATION, "previous": previous, "value": value, "rebooted": None}
        pending = previous != value or (desc.parameter_apply_status not in (None, "in-sync"))
        if not (self.reboot and pending):
            return change
        if previous != value and group == desc.parameter_group:
            desc = wait_until_pending_reboot(rds, db_type=self.db_type, identifier=self.db_identifier,
                                             timeout=self.pending_reboot_timeout, poll_interval=self.poll_interval)
        change["rebooted"] = reboot_writer(rds, desc)
        writer = change["rebooted"] if db_kind(self.db_type).separate_writer else None
        self.defer(
            trigger=PollTrigger(
                check="triggers.checks:poll_rds_db_available",
                kwargs={"aws_conn_id": self.aws_conn_id, "db_type": self.db_type, "identifier": self.db_identifier,
                        "writer_instance_identifier": writer,
                        "require_parameters_in_sync": True},
                poke_interval=self.poll_interval, timeout=self.wait_timeout),
            method_name="execute_complete",
            kwargs={"change": change},
            timeout=timedelta(seconds=self.wait_timeout),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None,
                         change: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or event.get("status") != "success":
            raise AirflowException(f"{self.task_id}: waiting for {self.db_identifier} after the reboot failed: "
                                   f"{(event or {}).get('message', event)}")
        return change or {}
