"""Operators for the clone's LSN: capture it on the target, then resolve CDC's start LSN in the source slot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from connections.postgres import connect
from migration.capture import METHOD_REDO_DONE_AT, LocalLogReader, LogReader, capture_clone_lsn
from migration.endpoints import endpoint_override
from migration.slots import resolve_start_lsn


class CaptureCloneLsnOperator(BaseOperator):
    """Capture the LSN at which the clone is consistent with the source.

    Tries ``aurora_volume_logical_start_lsn()`` on the clone, then "redo done at" in the clone's
    server log, then the slot's consistent point; ``method`` pins one. Platforms whose log is not a
    local file override ``log_reader()`` (it returns a callable that gives the whole log text).
    Returns ``{lsn, method}``.
    """

    template_fields: Sequence[str] = ("target_conn_id", "database", "target_host", "target_port", "method",
                                      "log_path", "source_conn_id", "slot_name", "consistent_point")
    ui_color = "#fce5cd"

    def __init__(self, *, target_conn_id: str, database: str, target_host: str | None = None,
                 target_port: int | str | None = None, method: str | None = None, log_path: str | None = None,
                 source_conn_id: str | None = None, slot_name: str | None = None,
                 consistent_point: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.target_conn_id = target_conn_id
        self.database = database
        self.target_host = target_host
        self.target_port = target_port
        self.method = method
        self.log_path = log_path
        self.source_conn_id = source_conn_id
        self.slot_name = slot_name
        self.consistent_point = consistent_point

    def log_reader(self, context: Context) -> LogReader | None:
        return LocalLogReader(self.log_path) if self.log_path else None

    def execute(self, context: Context) -> dict[str, str]:
        host, port = endpoint_override(self.target_host, self.target_port)
        method = self.method or None
        kwargs = {"log_reader": self.log_reader(context), "slot_name": self.slot_name or None,
                  "method": method, "consistent_point": self.consistent_point or None}
        with connect(self.target_conn_id, dbname=self.database, host=host, port=port) as target:
            if not self.source_conn_id:
                return capture_clone_lsn(target, **kwargs)
            with connect(self.source_conn_id, dbname=self.database) as source:
                return capture_clone_lsn(target, source_conn=source, **kwargs)


class ResolveCdcStartLsnOperator(BaseOperator):
    """Find where CDC starts in the source slot (``migration.slots.resolve_start_lsn``): just after a
    ``redo done at`` LSN, or at a first-missing position (Aurora's), checked against the slot by
    peeking only, never consuming.

    ``captured_lsn`` and ``capture_method`` usually come from CaptureCloneLsnOperator's XCom.
    ``publication`` is required for a pgoutput (native) slot. With ``replication_task_id`` (and
    ``aws_conn_id``), a DMS task that already exists keeps the CdcStartPosition it was created with:
    on a rerun its slot has moved past the captured LSN, and the task resumes from the slot anyway.
    Returns ``{start_lsn, captured_lsn, capture_method, decoded_changes, reason}``.
    """

    template_fields: Sequence[str] = ("source_conn_id", "database", "slot_name", "captured_lsn", "capture_method",
                                      "publication", "replication_task_id")
    ui_color = "#fce5cd"

    def __init__(self, *, source_conn_id: str, database: str, slot_name: str, captured_lsn: str,
                 capture_method: str = METHOD_REDO_DONE_AT, publication: str | None = None,
                 aws_conn_id: str | None = None, replication_task_id: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.database = database
        self.slot_name = slot_name
        self.captured_lsn = captured_lsn
        self.capture_method = capture_method
        self.publication = publication
        self.aws_conn_id = aws_conn_id
        self.replication_task_id = replication_task_id

    def execute(self, context: Context) -> dict[str, Any]:
        if self.replication_task_id:
            from connections.aws import aws_client
            from migration.dms.resources import find_task

            task = find_task(aws_client(self.aws_conn_id, "dms"), self.replication_task_id)
            if task and task.get("CdcStartPosition"):
                self.log.info("Replication task %s exists (%s); it keeps its start position %s",
                              self.replication_task_id, task.get("Status"), task["CdcStartPosition"])
                return {"start_lsn": task["CdcStartPosition"], "captured_lsn": self.captured_lsn,
                        "capture_method": self.capture_method, "decoded_changes": 0,
                        "reason": f"replication task {self.replication_task_id} exists ({task.get('Status')}) "
                                  f"and started at {task['CdcStartPosition']}; the slot is not resolved again"}
        with connect(self.source_conn_id, dbname=self.database) as conn:
            return resolve_start_lsn(conn, self.slot_name, self.captured_lsn, capture_method=self.capture_method,
                                     publication=self.publication or None)
