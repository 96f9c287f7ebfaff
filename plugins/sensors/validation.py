"""Waits (deferred) for the native engine's chunked validation to be clean."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context

from migration.endpoints import endpoint_override
from sensors.base import DeferrablePollSensor


class ValidationCleanSensor(DeferrablePollSensor):
    """Compares source and target chunk by chunk (first check), then rechecks differing chunks each poke.

    Done when every chunk matches; fails, naming tables and key ranges, when a chunk still differs
    after ``max_rechecks`` rechecks, each proven on a stable source once CDC has applied past it
    (``slot_name``: the source slot the subscription uses; without it a short settle pause stands in).
    Validation state belongs to the Airflow run: ``run_id`` (templated, ``{{ run_id }}`` by default)
    keys it together with ``validation_id``, so each run compares everything itself.
    Returns ``{tables, rows_compared, chunks, mismatched_chunks, persistent, in_flux, clean, failures,
    run_id, schemas, by_schema, compared_at, database}``.
    """

    poll_path = "triggers.checks:poll_native_validation"
    # In the triggerer the wait only watches the open chunks; full passes and rechecks run in the worker.
    async_poll_path = "triggers.fleet:native_validation"
    template_fields: Sequence[str] = ("source_conn_id", "target_conn_id", "database", "schemas", "validation_id",
                                      "run_id", "slot_name", "target_host", "target_port")

    def __init__(self, *, source_conn_id: str, target_conn_id: str, database: str, schemas: Sequence[str],
                 validation_id: str, control_schema: str = "migration_control", chunk_rows: int = 10000,
                 max_rechecks: int = 3, slot_name: str | None = None, target_host: str | None = None,
                 target_port: int | str | None = None, run_id: str = "{{ run_id }}", **kwargs: Any):
        kwargs.setdefault("poll_interval", 15.0)
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.database = database
        self.schemas = schemas
        self.validation_id = validation_id
        self.run_id = run_id
        self.control_schema = control_schema
        self.chunk_rows = chunk_rows
        self.max_rechecks = max_rechecks
        self.slot_name = slot_name
        self.target_host = target_host
        self.target_port = target_port

    def poll_kwargs(self, context: Context) -> dict[str, Any]:
        host, port = endpoint_override(self.target_host, self.target_port)
        return {"source_conn_id": self.source_conn_id, "target_conn_id": self.target_conn_id,
                "database": self.database, "schemas": list(self.schemas), "control_schema": self.control_schema,
                "validation_id": self.validation_id, "run_id": self._run_id(context),
                "chunk_rows": int(self.chunk_rows), "max_rechecks": int(self.max_rechecks),
                "slot_name": self.slot_name or None,
                "target_host": host, "target_port": port}

    def async_poll_kwargs(self) -> dict[str, Any]:
        # Polls in which chunks may still differ before the worker runs a proving recheck.
        return {"watch": {"polls": int(self.max_rechecks)}}

    def _run_id(self, context: Context) -> str:
        # Rendered by Airflow before execute; a sensor run outside a DAG run has no run id to key by.
        run_id = self.run_id
        if not isinstance(run_id, str) or not run_id or "{{" in run_id:
            run_id = context.get("run_id") if context else None
        if not run_id:
            raise ValueError(f"{self.task_id}: run_id: the Airflow run id is required (validation state belongs "
                             f"to a run); got {self.run_id!r}")
        return run_id
