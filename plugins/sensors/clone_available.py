"""Waits (deferred) for the local clone to accept connections and finish recovery."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from migration.endpoints import endpoint_override
from sensors.base import DeferrablePollSensor


class CloneAvailableSensor(DeferrablePollSensor):
    """Done when the clone at ``host``:``port`` (through ``target_conn_id``) answers and is out of recovery."""

    poll_path = "triggers.checks:poll_clone_available"
    template_fields: Sequence[str] = ("target_conn_id", "host", "port", "dbname")

    def __init__(self, *, target_conn_id: str, host: str | None = None, port: int | str | None = None,
                 dbname: str | None = None, **kwargs: Any):
        kwargs.setdefault("poll_interval", 2.0)
        kwargs.setdefault("timeout", 60 * 60)
        super().__init__(**kwargs)
        self.target_conn_id = target_conn_id
        self.host = host
        self.port = port
        self.dbname = dbname

    def poll_kwargs(self, context: Context) -> dict[str, Any]:
        host, port = endpoint_override(self.host, self.port, port_field="port")
        return {"conn_id": self.target_conn_id, "dbname": self.dbname, "host": host, "port": port}
