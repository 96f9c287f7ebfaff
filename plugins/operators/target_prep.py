"""Operators that prepare databases for CDC: control schema, and the target's user triggers.

Every operator that changes the target takes ``source_conn_id`` and first proves that the target
connection does not reach the source (``migration.clone_guard``); it changes nothing otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from airflow.sdk import BaseOperator, Context

from connections.postgres import connect
from migration.clone_guard import ensure_target_is_not_source
from migration.endpoints import endpoint_override
from migration.target_prep import (
    create_control_schema,
    disable_user_triggers,
)


@contextmanager
def target_connection(*, task: str, target_conn_id: str, source_conn_id: str, database: str,
                      host: str | None, port: int | str | None,
                      port_field: str = "target_port") -> Iterator[psycopg.Connection]:
    """A connection to the target that is proven not to reach the source (same database on both)."""
    if not source_conn_id:
        raise ValueError("source_conn_id: needed to prove the target connection does not reach the source")
    host, port = endpoint_override(host, port, port_field=port_field)
    with (connect(target_conn_id, dbname=database, host=host, port=port) as target,
          connect(source_conn_id, dbname=database) as source):
        ensure_target_is_not_source(target, source, task=task)
        yield target


class CreateControlSchemaOperator(BaseOperator):
    """``CREATE SCHEMA IF NOT EXISTS`` the control schema (DMS's ControlSchema) on the source or the target.

    ``host``/``port`` override the connection's endpoint (the clone's is known only at run time).
    With ``source_conn_id`` the connection is a target's: it must not reach that source.
    Returns the schema name.
    """

    template_fields: Sequence[str] = ("conn_id", "database", "control_schema", "host", "port", "source_conn_id")
    ui_color = "#cfe2f3"

    def __init__(self, *, conn_id: str, database: str, control_schema: str, host: str | None = None,
                 port: int | str | None = None, source_conn_id: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.database = database
        self.control_schema = control_schema
        self.host = host
        self.port = port
        self.source_conn_id = source_conn_id

    def execute(self, context: Context) -> str:
        if self.source_conn_id:
            with target_connection(task=self.task_id, target_conn_id=self.conn_id, source_conn_id=self.source_conn_id,
                                   database=self.database, host=self.host, port=self.port, port_field="port") as conn:
                return create_control_schema(conn, self.control_schema)
        host, port = endpoint_override(self.host, self.port, port_field="port")
        with connect(self.conn_id, dbname=self.database, host=host, port=port) as conn:
            return create_control_schema(conn, self.control_schema)


class DisableTargetTriggersOperator(BaseOperator):
    """Disable the enabled user triggers of the migrated schemas on the target.

    The exact DDL that enables them again is saved in ``<control_schema>.saved_ddl`` (a rerun
    returns the saved DDL) and returned for XCom; it holds only object names. Refuses to run when
    the target connection reaches the source (``source_conn_id``).
    """

    template_fields: Sequence[str] = ("target_conn_id", "source_conn_id", "database", "schemas", "control_schema",
                                      "target_host", "target_port")
    ui_color = "#cfe2f3"

    def __init__(self, *, target_conn_id: str, source_conn_id: str, database: str, schemas: Sequence[str],
                 control_schema: str, target_host: str | None = None, target_port: int | str | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.target_conn_id = target_conn_id
        self.source_conn_id = source_conn_id
        self.database = database
        self.schemas = schemas
        self.control_schema = control_schema
        self.target_host = target_host
        self.target_port = target_port

    def execute(self, context: Context) -> str:
        with target_connection(task=self.task_id, target_conn_id=self.target_conn_id,
                               source_conn_id=self.source_conn_id, database=self.database, host=self.target_host,
                               port=self.target_port) as conn:
            return disable_user_triggers(conn, self.schemas, control_schema=self.control_schema)
