"""Deferrable waits for RDS: a cluster (and its writer) or an instance available, a snapshot available.

They poll through the project's PollTrigger with plain boto3 in the triggerer, not the provider's
aiobotocore-based RdsDbAvailableTrigger: no aiobotocore release works with the pinned botocore.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from migration.aws.common import check_db_type, check_identifier
from sensors.base import DeferrablePollSensor


class RdsDbAvailableSensor(DeferrablePollSensor):
    """Wait until a DB cluster (with its writer instance, if named) or a DB instance is available.

    Returns ``{identifier, status, host, port, ...}``: the writer endpoint read from AWS at run
    time, which the LSN capture and the CDC target use (never a configured host).
    ``require_parameters_in_sync`` also waits for a reboot to have applied parameter changes.
    """

    poll_path = "triggers.checks:poll_rds_db_available"
    template_fields: Sequence[str] = ("aws_conn_id", "db_identifier", "writer_instance_identifier")
    ui_color = "#cfe2f3"

    def __init__(self, *, aws_conn_id: str, db_type: str, db_identifier: str,
                 writer_instance_identifier: str | None = None, require_parameters_in_sync: bool = False,
                 poll_interval: float = 30.0, **kwargs: Any):
        super().__init__(poll_interval=poll_interval, **kwargs)
        self.aws_conn_id = aws_conn_id
        self.db_type = check_db_type(db_type)
        self.db_identifier = db_identifier
        self.writer_instance_identifier = writer_instance_identifier
        self.require_parameters_in_sync = require_parameters_in_sync

    def poll_kwargs(self, context: Context) -> dict[str, Any]:
        return {
            "aws_conn_id": self.aws_conn_id,
            "db_type": self.db_type,
            "identifier": check_identifier(self.db_identifier, field="db_identifier"),
            "writer_instance_identifier": self.writer_instance_identifier or None,
            "require_parameters_in_sync": self.require_parameters_in_sync,
        }


class RdsDbSnapshotAvailableSensor(DeferrablePollSensor):
    """Wait until a DB snapshot is available; returns ``{snapshot_identifier, snapshot_arn, status}``."""

    poll_path = "triggers.checks:poll_rds_snapshot_available"
    template_fields: Sequence[str] = ("aws_conn_id", "snapshot_identifier")
    ui_color = "#cfe2f3"

    def __init__(self, *, aws_conn_id: str, snapshot_identifier: str, poll_interval: float = 30.0, **kwargs: Any):
        super().__init__(poll_interval=poll_interval, **kwargs)
        self.aws_conn_id = aws_conn_id
        self.snapshot_identifier = snapshot_identifier

    def poll_kwargs(self, context: Context) -> dict[str, Any]:
        return {
            "aws_conn_id": self.aws_conn_id,
            "snapshot_identifier": check_identifier(self.snapshot_identifier, field="snapshot_identifier",
                                                    max_length=255),
        }
