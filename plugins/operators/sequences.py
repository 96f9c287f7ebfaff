"""Operator that copies sequence states from the source to the target at cutover."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from connections.postgres import connect
from migration.endpoints import endpoint_override
from migration.sequences import read_sequences, sync_sequences


class SyncSequencesOperator(BaseOperator):
    """Read every sequence of the migrated schemas on the source (one query) and setval them all on
    the target (one statement). Run it after CDC has stopped. Returns the number of sequences set.
    """

    template_fields: Sequence[str] = ("source_conn_id", "target_conn_id", "database", "schemas", "target_host",
                                      "target_port")
    ui_color = "#ead1dc"

    def __init__(self, *, source_conn_id: str, target_conn_id: str, database: str, schemas: Sequence[str],
                 target_host: str | None = None, target_port: int | str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.database = database
        self.schemas = schemas
        self.target_host = target_host
        self.target_port = target_port

    def execute(self, context: Context) -> int:
        host, port = endpoint_override(self.target_host, self.target_port)
        with connect(self.source_conn_id, dbname=self.database) as source:
            seqs = read_sequences(source, self.schemas)
        with connect(self.target_conn_id, dbname=self.database, host=host, port=port) as target:
            return sync_sequences(target, seqs)
