"""Waits (deferred) for native CDC to catch up: slot lag and apply age under their limits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context
from airflow.sdk.exceptions import AirflowException

from migration.endpoints import endpoint_override
from sensors.base import DeferrablePollSensor


class CdcLagSensor(DeferrablePollSensor):
    """Done when the source slot's confirmed position is within ``max_lag_bytes`` of the source's WAL and
    the subscription's apply worker heard from the source within ``max_apply_age_seconds``. Each check
    is kept in ``<control_schema>.cdc_lag_samples`` on the target for the report's lag chart.

    While the subscription's apply worker keeps failing, each check's message starts with that problem
    and, with ``schemas``, names the objects whose definitions differ between source and target (schema
    drift, the usual cause); the sensor keeps waiting, so fixing the target lets CDC resume, and a
    timeout fails with that problem first.

    Returns ``{lag_bytes, apply_age_s, confirmed_flush_lsn, current_lsn, worker_running, apply_error_count, ...}``.
    """

    poll_path = "triggers.checks:poll_native_cdc_lag"
    async_poll_path = "triggers.fleet:native_cdc_lag"
    template_fields: Sequence[str] = ("source_conn_id", "target_conn_id", "database", "slot_name", "subscription",
                                      "target_host", "target_port", "schemas")

    def __init__(self, *, source_conn_id: str, target_conn_id: str, database: str, slot_name: str, subscription: str,
                 max_lag_bytes: int = 1024 * 1024, max_apply_age_seconds: float = 60,
                 control_schema: str | None = "migration_control", target_host: str | None = None,
                 target_port: int | str | None = None, schemas: Sequence[str] | None = None, **kwargs: Any):
        kwargs.setdefault("poll_interval", 10.0)
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.database = database
        self.slot_name = slot_name
        self.subscription = subscription
        self.max_lag_bytes = max_lag_bytes
        self.max_apply_age_seconds = max_apply_age_seconds
        self.control_schema = control_schema
        self.target_host = target_host
        self.target_port = target_port
        self.schemas = schemas

    def poll_kwargs(self, context: Context) -> dict[str, Any]:
        host, port = endpoint_override(self.target_host, self.target_port)
        return {"source_conn_id": self.source_conn_id, "target_conn_id": self.target_conn_id,
                "database": self.database, "slot_name": self.slot_name, "subscription": self.subscription,
                "max_lag_bytes": int(self.max_lag_bytes), "max_apply_age_s": float(self.max_apply_age_seconds),
                "control_schema": self.control_schema, "schemas": list(self.schemas) if self.schemas else None,
                "target_host": host, "target_port": port}

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> Any:
        problem = ((event or {}).get("payload") or {}).get("problem")
        if event and event.get("status") != "success" and problem:
            raise AirflowException(f"{self.task_id}: {problem}. Last state: {event.get('message', event)}")
        return super().execute_complete(context, event)
