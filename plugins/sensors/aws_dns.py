"""Deferrable wait for a Route53 change to reach every name server (INSYNC)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from sensors.base import DeferrablePollSensor


class AwsDnsChangeInSyncSensor(DeferrablePollSensor):
    """Wait until a Route53 change is INSYNC; returns ``{change_id, status}``."""

    check_path = "migration.aws:check_dns_change_in_sync"
    template_fields: Sequence[str] = ("aws_conn_id", "change_id")
    ui_color = "#cfe2f3"

    def __init__(self, *, aws_conn_id: str, change_id: str, poll_interval: float = 5.0, **kwargs: Any):
        super().__init__(poll_interval=poll_interval, **kwargs)
        self.aws_conn_id = aws_conn_id
        self.change_id = change_id

    def check_kwargs(self, context: Context) -> dict[str, Any]:
        if not self.change_id:
            raise ValueError("change_id: the Route53 change id is required (from the DNS switch's XCom)")
        return {"aws_conn_id": self.aws_conn_id, "change_id": self.change_id}
