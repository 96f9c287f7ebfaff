"""The local platform's initial load: clone the source with pg_basebackup and start the copy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from connections.postgres import conninfo_for
from migration.local_clone import clone_local


class LocalCloneOperator(BaseOperator):
    """Copy the source server into ``data_directory`` and start it on ``port``; safe to rerun.

    A finished clone is started if stopped and never copied again. ``replication_conn_id`` (default:
    the source connection) is the role pg_basebackup connects as; it needs the REPLICATION attribute.
    Its password reaches pg_basebackup through a temporary 0600 password file, never its command line. Returns ``{host,
    port, datadir, logfile, copied, started}``;
    ``logfile`` holds the ``redo done at`` line the capture step reads.
    """

    template_fields: Sequence[str] = ("source_conn_id", "replication_conn_id", "data_directory", "port",
                                      "source_dbname")
    ui_color = "#cfe2f3"

    def __init__(self, *, source_conn_id: str, data_directory: str, port: int | str, source_dbname: str | None = None,
                 bindir: str | None = None, timeout: int = 1800, replication_conn_id: str | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.replication_conn_id = replication_conn_id
        self.data_directory = data_directory
        self.port = port
        self.source_dbname = source_dbname
        self.bindir = bindir
        self.timeout = timeout

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            port = int(self.port)
        except (TypeError, ValueError):
            raise ValueError(f"port: expected a TCP port number, got {self.port!r}") from None
        if not self.replication_conn_id:
            self.log.info("No replication_conn_id: pg_basebackup connects as the source connection %s",
                          self.source_conn_id)
        conninfo = conninfo_for(self.replication_conn_id or self.source_conn_id, dbname=self.source_dbname)
        return clone_local(conninfo, self.data_directory, port, self.bindir, timeout=self.timeout)
