"""Waits (deferred) for the native engine's chunked validation to be clean."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from operators.replication_slot import endpoint_override
from sensors.base import DeferrablePollSensor


class ValidationCleanSensor(DeferrablePollSensor):
    """Compares source and target chunk by chunk (first check), then rechecks differing chunks each poke.

    Done when every chunk matches; fails, naming tables and key ranges, when a chunk still differs
    after ``max_rechecks`` rechecks, each proven on a stable source once CDC has applied past it
    (``slot_name``: the source slot the subscription uses; without it a short settle pause stands in).
    Returns ``{tables, rows_compared, chunks, mismatched_chunks, persistent, in_flux, clean, failures,
    database}``.
    """

    check_path = "migration.validation:check_validation"
    template_fields: Sequence[str] = ("source_conn_id", "target_conn_id", "database", "schemas", "validation_id",
                                      "slot_name", "target_host", "target_port")

    def __init__(self, *, source_conn_id: str, target_conn_id: str, database: str, schemas: Sequence[str],
                 validation_id: str, control_schema: str = "migration_control", chunk_rows: int = 10000,
                 max_rechecks: int = 3, slot_name: str | None = None, target_host: str | None = None,
                 target_port: int | str | None = None, **kwargs: Any):
        kwargs.setdefault("poll_interval", 15.0)
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.database = database
        self.schemas = schemas
        self.validation_id = validation_id
        self.control_schema = control_schema
        self.chunk_rows = chunk_rows
        self.max_rechecks = max_rechecks
        self.slot_name = slot_name
        self.target_host = target_host
        self.target_port = target_port

    def check_kwargs(self, context: Context) -> dict[str, Any]:
        host, port = endpoint_override(self.target_host, self.target_port)
        return {"source_conn_id": self.source_conn_id, "target_conn_id": self.target_conn_id,
                "database": self.database, "schemas": list(self.schemas), "control_schema": self.control_schema,
                "validation_id": self.validation_id, "chunk_rows": int(self.chunk_rows),
                "max_rechecks": int(self.max_rechecks), "slot_name": self.slot_name or None,
                "target_host": host, "target_port": port}
