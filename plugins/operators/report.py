"""End-of-run tasks: clean up what only served the migration, then write the migration report."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, Context

from connections.postgres import connect
from migration import report as report_md
from migration.cutover_state import ALREADY_CUT_OVER
from migration.endpoints import endpoint_override
from operators.xcom_args import results_list

OUTCOME_CUT_OVER = "cut over"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def report_dir(dag_id: str, run_id: str) -> Path:
    base = os.environ.get("MIGRATION_REPORT_DIR") or str(Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser()
                                                          / "migration_reports")
    return Path(base) / dag_id / re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)


def source_changes(ti: Any) -> list[str]:
    """What this run changed on the source after proceed, or, when it stopped before (a dry run),
    what preflight said it would change."""
    def as_list(value: Any) -> list[Any]:
        return list(value) if isinstance(value, list | tuple) else [value] if value else []

    made = [f"{c['table']} in database {item.get('database')}: REPLICA IDENTITY {c['now']} (was {c['previous']})"
            for item in as_list(ti.xcom_pull(task_ids="apply_source_changes")) if isinstance(item, dict)
            for c in item.get("changes", [])]
    logical = ti.xcom_pull(task_ids="source_logical_replication_on")
    if isinstance(logical, dict) and logical.get("parameter_group"):
        made.append(f"rds.logical_replication={logical.get('value')} in parameter group {logical['parameter_group']} "
                    f"(was {logical.get('previous')}); rebooted: {logical.get('rebooted') or 'no'}")
    dns = ti.xcom_pull(task_ids="lower_dns_ttl")
    if isinstance(dns, dict) and dns.get("record_name"):
        made.append(f"DNS record {dns['record_name']}: TTL {dns.get('old_ttl')} s before, {dns.get('ttl')} s for the "
                    f"cutover" + (f" (lowered at {dns.get('lowered_at')}, one old TTL ahead)" if dns.get("changed")
                                  else " (unchanged)"))
    if made:
        return made
    planned = [f"planned, not made: {f['object']}: {f['problem']}"
               for findings in as_list(ti.xcom_pull(task_ids="preflight")) for f in as_list(findings)
               if isinstance(f, dict) and f.get("level") == "info"]
    aws = ti.xcom_pull(task_ids="preflight_aws")
    planned += [f"planned, not made: {p}" for p in (aws or {}).get("planned_changes",
                                                                   [])] if isinstance(aws, dict) else []
    return planned


def cutover_timeline(ti: Any, cutover_task_id: str) -> dict[str, Any] | None:
    """The critical section's timeline: its return value, or the one it pushed before failing."""
    return ti.xcom_pull(task_ids=cutover_task_id) or ti.xcom_pull(task_ids=cutover_task_id, key="timeline")


class SourceSlotCleanupOperator(BaseOperator):
    """After a completed cutover, drop the source's slots and publications: kept, they would hold WAL
    on the source forever; and put back the replica identities ``apply_source_changes`` changed (as
    recorded in the source's control schema). After anything else all of it stays, so a rerun resumes
    where CDC stood. Never touches table data. Returns the list of what was removed, restored or kept."""

    template_fields: Sequence[str] = ("source_conn_id", "plan")

    def __init__(self, *, source_conn_id: str, plan: Any, cutover_task_id: str, control_schema: str | None = None,
                 migration_id: str | None = None, target_conn_id: str | None = None, on_aws: bool = False,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.plan = plan
        self.cutover_task_id = cutover_task_id
        self.control_schema = control_schema
        self.migration_id = migration_id
        self.target_conn_id = target_conn_id
        self.on_aws = on_aws

    def _completed(self, context: Context) -> bool:
        """The cutover completed: its timeline says so, or (when this try has none, e.g. the whole run was
        cleared after the cutover) the run's cutover journal does."""
        timeline = cutover_timeline(context["ti"], self.cutover_task_id)
        if timeline:
            return timeline.get("status") == "completed"
        if not (self.migration_id and self.target_conn_id and self.control_schema):
            return False
        from operators.after_cutover import find_completed_cutover

        done = find_completed_cutover(context, migration_id=self.migration_id, target_conn_id=self.target_conn_id,
                                      control_schema=self.control_schema, on_aws=self.on_aws, log=self.log)
        if done is not None:
            self.log.info("%s: run %s opened the target at %s (cutover journal); what is left is cleaned up",
                          ALREADY_CUT_OVER, done.run_id, done.target_open_at)
        return done is not None

    def execute(self, context: Context) -> list[str]:
        from migration.native_cdc import drop_publication
        from migration.preflight import restore_replica_identity
        from migration.slots import drop_slot

        items = list(self.plan or [])
        if not self._completed(context):
            kept = [f"kept slot {item['slot_name']} on {item['database']} (no completed cutover; a rerun resumes from "
                    "it)"
                    for item in items]
            for line in kept:
                self.log.info(line)
            return kept
        done = []
        for item in items:
            with connect(self.source_conn_id, dbname=item["database"]) as conn:
                if drop_slot(conn, item["slot_name"]):
                    done.append(f"dropped slot {item['slot_name']} on source database {item['database']}")
                if drop_publication(conn, item["publication"]):
                    done.append(f"dropped publication {item['publication']} on source database {item['database']}")
                if self.control_schema:
                    done += [f"{line} (source database {item['database']})"
                             for line in restore_replica_identity(conn, control_schema=self.control_schema)]
        for line in done:
            self.log.info(line)
        return done


class MigrationReportOperator(BaseOperator):
    """Writes report.md, report.json and lag.png: timeline, validation, write-blocked window, cleanup."""

    template_fields: Sequence[str] = ("databases", "validation_results", "target_conn_id", "target_host",
                                      "target_port")

    def __init__(self, *, migration_id: str, config_summary: dict[str, str], databases: Any, validation_results: Any,
                 cutover_task_id: str, cleanup_task_id: str, target_conn_id: str, control_schema: str,
                 target_host: str | None = None, target_port: Any = None, load_summary_task_id: str | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.load_summary_task_id = load_summary_task_id  # pg_dump: the initial load's duration and throughput
        self.target_host = target_host
        self.target_port = target_port
        self.migration_id = migration_id
        self.config_summary = config_summary
        self.databases = databases
        self.validation_results = validation_results
        self.cutover_task_id = cutover_task_id
        self.cleanup_task_id = cleanup_task_id
        self.target_conn_id = target_conn_id
        self.control_schema = control_schema

    def _lag_samples(self, databases: list[str]) -> list[dict[str, Any]]:
        from migration.native_cdc import read_lag_samples

        samples: list[dict[str, Any]] = []
        for database in databases:
            try:
                host, port = endpoint_override(self.target_host, self.target_port)
                with connect(self.target_conn_id, dbname=database, host=host, port=port) as conn:
                    samples += read_lag_samples(conn, self.control_schema, database)
            except Exception as exc:  # noqa: BLE001 - a report without a chart beats no report
                self.log.warning("No lag samples from %s: %s", database, exc)
        return samples

    def execute(self, context: Context) -> dict[str, Any]:
        ti = context["ti"]
        directory = report_dir(context["dag"].dag_id, context["run_id"])
        written = _read_json(directory / "report.json")
        if written.get("outcome") == OUTCOME_CUT_OVER:
            # The tasks before it did nothing on a rerun after the cutover; a new report would lose what they found.
            self.log.info("%s: the report of this run's completed cutover stays as written: %s", ALREADY_CUT_OVER,
                          directory / "report.md")
            return {"path": str(directory / "report.md"), "outcome": written["outcome"],
                    "write_blocked_seconds": written.get("write_blocked_seconds"), "note": ALREADY_CUT_OVER}
        databases = list(self.databases or [])
        timeline = cutover_timeline(ti, self.cutover_task_id) or {}
        validation = [{"database": r.get("database"), "tables": r.get("tables", 0), "rows": r.get("rows_compared", 0),
                       "mismatched_chunks": r.get("mismatched_chunks", 0)}
                      for r in results_list(self.validation_results)]
        outcome = {"completed": OUTCOME_CUT_OVER,
                   "aborted": f"aborted at {timeline.get('failed_step')}; source writes restored",
                   "fence_kept": f"stopped at {timeline.get('failed_step')} after the commit point; the source stays "
                                 "fenced"}
        report = {
            "migration_id": self.migration_id,
            "run_id": context["run_id"],
            **self.config_summary,
            "databases": databases,
            "outcome": outcome.get(timeline.get("status"), "no cutover (rejected, dry run or stopped earlier)"),
            "write_blocked_seconds": timeline.get("write_blocked_seconds"),
            "initial_load_stats": ti.xcom_pull(task_ids=self.load_summary_task_id) if self.load_summary_task_id
            else None,
            "writes_blocked_at": timeline.get("writes_blocked_at"),
            "target_open_at": timeline.get("target_open_at"),
            "timeline": [{"name": s.get("step"), "started_at": s.get("started_at"), "seconds": s.get("seconds", 0),
                          "detail": s.get("detail", ""), **({"error": s["error"]} if s.get("error") else {})}
                         for s in timeline.get("steps", [])],
            "source_quiet_proof": timeline.get("source_quiet_proof"),
            "validation": validation,
            "cleanup": ti.xcom_pull(task_ids=self.cleanup_task_id) or [],
            "source_changes": source_changes(ti),
        }
        path = report_md.write_report(report, directory, self._lag_samples(databases))
        (directory / "report.json").write_text(json.dumps(report, indent=2, default=str))
        self.log.info("Migration report: %s\n%s", path, path.read_text())
        return {"path": str(path), "outcome": report["outcome"],
                "write_blocked_seconds": report["write_blocked_seconds"]}
