"""DMS sensors: task running (provider base sensor), CDC latency and validation (deferrable)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.sensors.dms import DmsTaskBaseSensor
from airflow.sdk import Context

from sensors.base import DeferrablePollSensor

# How often the DMS waits ask (config: dms.poll_interval_seconds); the provider's sensors ask every 60 s.
DEFAULT_POLL_SECONDS = 15.0


class DmsTaskRunningSensor(DmsTaskBaseSensor):
    """Waits for the started CDC task to be 'running'; a failed or stopped task fails with DMS's
    StopReason and LastFailureMessage (the provider's base sensor reports both)."""

    def __init__(self, *, replication_task_arn: str, **kwargs: Any):
        kwargs.setdefault("poke_interval", DEFAULT_POLL_SECONDS)
        kwargs.setdefault("timeout", 30 * 60)
        super().__init__(replication_task_arn=replication_task_arn, target_statuses=["running"],
                         termination_statuses=["failed", "stopped", "stopping", "deleting", "failed-move"],
                         **kwargs)


class DmsCdcLatencySensor(DeferrablePollSensor):
    """Waits until CDCLatencySource + CDCLatencyTarget stay at or under ``max_latency_seconds`` for
    ``consecutive_datapoints`` periods, and the source slot's confirmed_flush_lsn is within
    ``max_slot_lag_bytes`` of the source WAL (so a quiet metric cannot hide a stalled slot)."""

    poll_path = "triggers.checks:poll_dms_cdc_latency"
    template_fields: Sequence[str] = ("aws_conn_id", "replication_task_arn", "replication_instance_id",
                                      "source_conn_id", "database", "slot_name")

    def __init__(self, *, aws_conn_id: str | None, replication_task_arn: str, replication_instance_id: str,
                 source_conn_id: str, database: str, slot_name: str, max_latency_seconds: float = 5,
                 consecutive_datapoints: int = 3, max_slot_lag_bytes: int = 16 * 1024 * 1024,
                 period_seconds: int = 60, lookback_seconds: int = 900, region_name: str | None = None,
                 **kwargs: Any):
        kwargs.setdefault("poll_interval", DEFAULT_POLL_SECONDS)
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id
        self.replication_task_arn = replication_task_arn
        self.replication_instance_id = replication_instance_id
        self.source_conn_id = source_conn_id
        self.database = database
        self.slot_name = slot_name
        self.max_latency_seconds = max_latency_seconds
        self.consecutive_datapoints = consecutive_datapoints
        self.max_slot_lag_bytes = max_slot_lag_bytes
        self.period_seconds = period_seconds
        self.lookback_seconds = lookback_seconds
        self.region_name = region_name

    def poll_kwargs(self, context: Context) -> dict[str, Any]:
        return {
            "aws_conn_id": self.aws_conn_id, "region_name": self.region_name,
            "replication_task_arn": self.replication_task_arn,
            "replication_instance_id": self.replication_instance_id,
            "source_conn_id": self.source_conn_id, "database": self.database, "slot_name": self.slot_name,
            "max_latency_seconds": float(self.max_latency_seconds),
            "consecutive_datapoints": int(self.consecutive_datapoints),
            "max_slot_lag_bytes": int(self.max_slot_lag_bytes),
            "period_seconds": int(self.period_seconds), "lookback_seconds": int(self.lookback_seconds),
        }


class DmsValidationSensor(DeferrablePollSensor):
    """Waits until describe_table_statistics shows every table 'Validated' and no row of the target's
    <control_schema>.awsdms_validation_failures_v1 for the task stands.

    With ``source_conn_id`` and the task's ``slot_name`` (as the DAG sets them), rows DMS suspended or
    recorded while they changed are compared again on source and target at each poll and allowed to
    settle; it fails, naming tables and keys, only on a row that still differs while its source row
    stayed unchanged and CDC applied past it (``migration.dms.monitoring.validation_state``). Without
    them any failure row fails at once."""

    poll_path = "triggers.checks:poll_dms_validation"
    template_fields: Sequence[str] = ("aws_conn_id", "replication_task_arn", "target_conn_id", "database",
                                      "target_host", "target_port", "control_schema", "expected_tables",
                                      "source_conn_id", "slot_name")

    def __init__(self, *, aws_conn_id: str | None, replication_task_arn: str, target_conn_id: str, database: str,
                 control_schema: str, target_host: str | None = None, target_port: int | str | None = None,
                 expected_tables: Sequence[str] | None = None, max_reported: int = 20,
                 region_name: str | None = None, source_conn_id: str | None = None, slot_name: str | None = None,
                 **kwargs: Any):
        kwargs.setdefault("poll_interval", DEFAULT_POLL_SECONDS)
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.slot_name = slot_name
        self.aws_conn_id = aws_conn_id
        self.replication_task_arn = replication_task_arn
        self.target_conn_id = target_conn_id
        self.database = database
        self.control_schema = control_schema
        self.target_host = target_host
        self.target_port = target_port
        self.expected_tables = expected_tables
        self.max_reported = max_reported
        self.region_name = region_name

    def poll_kwargs(self, context: Context) -> dict[str, Any]:
        port = self.target_port
        return {
            "aws_conn_id": self.aws_conn_id, "region_name": self.region_name,
            "replication_task_arn": self.replication_task_arn, "target_conn_id": self.target_conn_id,
            "database": self.database, "control_schema": self.control_schema,
            "target_host": self.target_host if self.target_host not in (None, "", "None") else None,
            "target_port": int(port) if port not in (None, "", "None") else None,
            "expected_tables": list(self.expected_tables) if self.expected_tables else None,
            "max_reported": int(self.max_reported),
            **({"source_conn_id": self.source_conn_id, "slot_name": self.slot_name} if self.source_conn_id else {}),
        }
