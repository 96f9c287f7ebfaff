"""The logical initial load (``initial_load: pg_dump``): checks, roles, the load of each database, its summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from connections.postgres import connect, conninfo_for
from migration.endpoints import endpoint_override
from migration.logical_load import analyze_schemas, load_database, preflight_findings
from migration.logical_roles import create_missing_roles, major_of, tools_for
from migration.preflight import raise_for_failures

ADMIN_DATABASE = "postgres"


class _TargetTask(BaseOperator):
    """Shared arguments: the two connections and the target's run-time endpoint (AWS)."""

    def __init__(self, *, source_conn_id: str, target_conn_id: str, target_host: str | None = None,
                 target_port: int | str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.target_conn_id = target_conn_id
        self.target_host = target_host
        self.target_port = target_port

    def _target(self, dbname: str) -> dict[str, Any]:
        host, port = endpoint_override(self.target_host, self.target_port)
        return {"dbname": dbname, "host": host, "port": port}


class LogicalLoadPreflightOperator(_TargetTask):
    """Read-only checks of one database's logical load: the target's major version is at least the
    source's, the target database is missing or empty, and which roles the load will create (their
    passwords must be set on the target). Raises one error with every failure; returns the findings."""

    template_fields: Sequence[str] = ("source_conn_id", "target_conn_id", "database", "schemas", "target_host",
                                      "target_port")
    ui_color = "#f4cccc"

    def __init__(self, *, database: str, schemas: Sequence[str], migration_id: str, control_schema: str,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.database = database
        self.schemas = schemas
        self.migration_id = migration_id
        self.control_schema = control_schema

    def execute(self, context: Context) -> list[dict[str, str]]:
        target = self._target(self.database)
        with connect(self.source_conn_id, dbname=self.database) as source, \
                connect(self.target_conn_id, **{**target, "dbname": ADMIN_DATABASE}) as admin:
            findings = preflight_findings(source, admin, conninfo_for(self.target_conn_id, **target),
                                          database=self.database, schemas=list(self.schemas),
                                          control_schema=self.control_schema, migration_id=self.migration_id)
        for finding in findings:
            self.log.info("%s", finding)
        return [finding.as_dict() for finding in raise_for_failures(findings)]


class CreateTargetRolesOperator(_TargetTask):
    """Create on the target the roles that own or are granted on the migrated objects (and their member
    logins) when missing, from ``pg_dumpall --roles-only --no-role-passwords``. Returns the created names."""

    template_fields: Sequence[str] = ("source_conn_id", "target_conn_id", "databases", "schemas", "target_host",
                                      "target_port")
    ui_color = "#fff2cc"

    def __init__(self, *, databases: Sequence[str], schemas: Sequence[str], **kwargs: Any):
        super().__init__(**kwargs)
        self.databases = databases
        self.schemas = schemas

    def execute(self, context: Context) -> list[str]:
        created: list[str] = []
        with connect(self.target_conn_id, **self._target(ADMIN_DATABASE)) as admin:
            for database in self.databases:
                with connect(self.source_conn_id, dbname=database) as source:
                    tools = tools_for(major_of(source), major_of(admin))
                    created += create_missing_roles(source, admin, list(self.schemas),
                                                    pg_dumpall=tools["pg_dumpall"],
                                                    source_conninfo=conninfo_for(self.source_conn_id, dbname=database))
        return created


class LogicalLoadOperator(_TargetTask):
    """Load one database: a slot with an exported snapshot, ``pg_dump -Fd -j`` at it, ``pg_restore -j`` in
    sections; safe to rerun (a dead load is discarded and started again, a finished one is kept).
    Returns the slot's ``consistent_point`` (where CDC starts) and the load's duration and size."""

    template_fields: Sequence[str] = ("source_conn_id", "target_conn_id", "database", "schemas", "slot_name",
                                      "target_host", "target_port")
    ui_color = "#cfe2f3"

    def __init__(self, *, database: str, schemas: Sequence[str], slot_name: str, migration_id: str,
                 control_schema: str, jobs: int = 2, plugin: str = "pgoutput", dump_root: str | None = None,
                 wait_for_xacts_s: float = 300, **kwargs: Any):
        super().__init__(**kwargs)
        self.database = database
        self.schemas = schemas
        self.slot_name = slot_name
        self.migration_id = migration_id
        self.control_schema = control_schema
        self.jobs = jobs
        self.plugin = plugin
        self.dump_root = dump_root
        self.wait_for_xacts_s = wait_for_xacts_s

    def execute(self, context: Context) -> dict[str, Any]:
        target = self._target(self.database)
        return load_database(
            source_conninfo=conninfo_for(self.source_conn_id, dbname=self.database),
            target_conninfo=conninfo_for(self.target_conn_id, **target),
            target_admin_conninfo=conninfo_for(self.target_conn_id, **{**target, "dbname": ADMIN_DATABASE}),
            database=self.database, schemas=list(self.schemas), slot_name=self.slot_name,
            migration_id=self.migration_id, control_schema=self.control_schema, jobs=self.jobs, plugin=self.plugin,
            dump_root=self.dump_root, wait_for_xacts_s=self.wait_for_xacts_s, log_fn=self.log.info)


class LogicalLoadSummaryOperator(_TargetTask):
    """After every database is loaded: ANALYZE the loaded schemas (a restore brings no statistics) and
    sum the loads up for the report. Returns ``{databases: {db: consistent_point}, load_seconds, bytes,
    mb_per_second, ...}``."""

    template_fields: Sequence[str] = ("target_conn_id", "databases", "schemas", "loads", "target_host",
                                      "target_port")
    ui_color = "#d9ead3"

    def __init__(self, *, databases: Sequence[str], schemas: Sequence[str], loads: Any, **kwargs: Any):
        super().__init__(source_conn_id="", **kwargs)
        self.databases = databases
        self.schemas = schemas
        self.loads = loads

    def execute(self, context: Context) -> dict[str, Any]:
        loads = [dict(item) for item in (self.loads or [])]
        for database in self.databases:
            with connect(self.target_conn_id, **self._target(database)) as conn:
                analyze_schemas(conn, list(self.schemas))
        seconds = max((float(item.get("load_seconds") or 0) for item in loads), default=0.0)
        total = sum(int(item.get("bytes") or 0) for item in loads)
        summary = {"databases": {item["database"]: item["consistent_point"] for item in loads},
                   "load_seconds": seconds, "bytes": total,
                   "tables": sum(int(item.get("tables") or 0) for item in loads),
                   "rows_estimate": sum(int(item.get("rows_estimate") or 0) for item in loads),
                   "mb_per_second": round(total / 1e6 / seconds, 3) if seconds else None}
        self.log.info("Initial load: %s tables, %.1f MB in %.1f s (%s MB/s)", summary["tables"], total / 1e6, seconds,
                      summary["mb_per_second"])
        return summary
