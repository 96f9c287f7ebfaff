"""Operators for replication slots: create the CDC slot on the source, drop the clone's copies on the target."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from connections.postgres import connect
from migration.endpoints import endpoint_override
from migration.slots import create_slot, drop_copied_slots, plugin_for


class CreateReplicationSlotOperator(BaseOperator):
    """Create (or reuse) the logical replication slot for one source database.

    The output plugin follows the CDC engine (test_decoding for DMS, pgoutput for native).
    Returns ``{slot_name, plugin, lsn, created}``; ``lsn`` is the slot's consistent point.
    """

    template_fields: Sequence[str] = ("source_conn_id", "database", "slot_name", "engine")
    ui_color = "#d9ead3"

    def __init__(self, *, source_conn_id: str, database: str, slot_name: str, engine: str,
                 wait_for_xacts_s: float = 300, **kwargs: Any):
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.database = database
        self.slot_name = slot_name
        self.engine = engine
        self.wait_for_xacts_s = wait_for_xacts_s

    def execute(self, context: Context) -> dict[str, Any]:
        plugin = plugin_for(self.engine)
        with connect(self.source_conn_id, dbname=self.database) as conn:
            return create_slot(conn, self.slot_name, plugin, wait_for_xacts_s=self.wait_for_xacts_s)


class DropCopiedSlotsOperator(BaseOperator):
    """Drop the replication slots a physical clone carried over from the source (inactive ones).

    First proves, with ``source_conn_id``, that the target endpoint is not the source: it refuses to
    run (changing nothing) when both reach the same server. Returns the dropped slot names.
    """

    template_fields: Sequence[str] = ("target_conn_id", "database", "target_host", "target_port", "source_conn_id")
    ui_color = "#d9ead3"

    def __init__(self, *, target_conn_id: str, source_conn_id: str, database: str, target_host: str | None = None,
                 target_port: int | str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.target_conn_id = target_conn_id
        self.database = database
        self.target_host = target_host
        self.target_port = target_port
        self.source_conn_id = source_conn_id

    def execute(self, context: Context) -> list[str]:
        if not self.source_conn_id:
            raise ValueError("source_conn_id: needed to prove the target connection does not reach the source")
        host, port = endpoint_override(self.target_host, self.target_port)
        with (connect(self.target_conn_id, dbname=self.database, host=host, port=port) as target,
              connect(self.source_conn_id, dbname=self.database) as source):
            return drop_copied_slots(target, source_conn=source)
