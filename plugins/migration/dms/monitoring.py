"""Watching DMS CDC: table statistics, CloudWatch latency, the source slot and validation failures.

``cdc_latency_state`` and ``validation_state`` decide the deferrable waits (their entry points,
which open clients and connections from Airflow connection ids, are in ``triggers/checks.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.sql import Identifier

from migration import sql as sqlfiles
from migration.dms.errors import DmsError, DmsValidationFailed
from migration.dms.requests import check_pg_name, check_slot_name, task_resource_id
from migration.dms.resources import describe_task, task_failure
from migration.native_cdc import slot_positions
from migration.validation import cdc_applied_past, wal_position

NAMESPACE = "AWS/DMS"
VALIDATION_FAILURES_TABLE = "awsdms_validation_failures_v1"
# ValidationState values (describe_table_statistics) that no amount of waiting turns into "Validated".
VALIDATION_FAILED_STATES = frozenset(
    {"Mismatched records", "Suspended records", "No primary key", "Table error", "Error", "Not enabled"}
)
# Of those, the states of rows DMS compared while they changed: with a source connection their keys are
# compared again, and they settle (VALIDATION_FAILED_STATES without a source connection).
RECHECKABLE_STATES = ("Mismatched records", "Suspended records")


# ---------------------------------------------------------------------------------------------
# Table statistics
# ---------------------------------------------------------------------------------------------

def table_statistics(dms: Any, arn: str) -> list[dict]:
    """Every table's statistics for the task (all pages)."""
    tables: list[dict] = []
    marker: str | None = None
    while True:
        kwargs: dict[str, Any] = {"ReplicationTaskArn": arn, "MaxRecords": 500}
        if marker:
            kwargs["Marker"] = marker
        page = dms.describe_table_statistics(**kwargs)
        tables.extend(page.get("TableStatistics", []))
        marker = page.get("Marker")
        if not marker:
            return tables


# ---------------------------------------------------------------------------------------------
# CloudWatch
# ---------------------------------------------------------------------------------------------

LATENCY_METRICS = {"source": "CDCLatencySource", "target": "CDCLatencyTarget", "incoming": "CDCIncomingChanges"}


def cdc_metrics(cloudwatch: Any, *, replication_instance_id: str, task_resource_id: str, now: datetime,
                lookback_seconds: int = 900, period_seconds: int = 60) -> dict[str, list[tuple[datetime, float]]]:
    """CDCLatencySource, CDCLatencyTarget (Maximum) and CDCIncomingChanges per period, newest first."""
    end = datetime.fromtimestamp((int(now.timestamp()) // period_seconds + 1) * period_seconds, UTC)
    start = end - timedelta(seconds=lookback_seconds)
    dimensions = [{"Name": "ReplicationInstanceIdentifier", "Value": replication_instance_id},
                  {"Name": "ReplicationTaskIdentifier", "Value": task_resource_id}]
    queries = [
        {"Id": key, "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": NAMESPACE, "MetricName": name, "Dimensions": dimensions},
            "Period": period_seconds, "Stat": "Maximum"}}
        for key, name in LATENCY_METRICS.items()
    ]
    series: dict[str, dict[datetime, float]] = {key: {} for key in LATENCY_METRICS}
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end,
                                  "ScanBy": "TimestampDescending"}
        if token:
            kwargs["NextToken"] = token
        page = cloudwatch.get_metric_data(**kwargs)
        for result in page.get("MetricDataResults", []):
            series[result["Id"]].update(zip(result.get("Timestamps", []), result.get("Values", []), strict=False))
        token = page.get("NextToken")
        if not token:
            break
    return {key: sorted(points.items(), key=lambda item: item[0], reverse=True) for key, points in series.items()}


def evaluate_latency(source: list[tuple[datetime, float]], target: list[tuple[datetime, float]], *,
                     max_latency_seconds: float, consecutive_datapoints: int) -> tuple[bool, dict[str, Any]]:
    """Ready when the newest ``consecutive_datapoints`` periods each have source + target latency <= max."""
    target_at = dict(target)
    totals = [(ts, value + target_at[ts]) for ts, value in sorted(source, reverse=True) if ts in target_at]
    recent = totals[:consecutive_datapoints]
    info = {
        "datapoints": [{"at": ts.isoformat(), "latency_seconds": round(total, 3)} for ts, total in recent],
        "max_latency_seconds": max_latency_seconds,
        "consecutive_datapoints": consecutive_datapoints,
    }
    if len(recent) < consecutive_datapoints:
        info["reason"] = f"{len(recent)} of {consecutive_datapoints} latency datapoints so far"
        return False, info
    over = [total for _, total in recent if total > max_latency_seconds]
    if over:
        info["reason"] = f"latency {max(over):.1f} s is over {max_latency_seconds} s"
        return False, info
    info["reason"] = f"latency under {max_latency_seconds} s for {consecutive_datapoints} datapoints"
    return True, info


# ---------------------------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------------------------

def slot_position(conn: Any, slot_name: str) -> dict[str, Any] | None:
    """The slot's active flag, confirmed_flush_lsn, the server's current_lsn and lag_bytes, or None if absent."""
    check_slot_name(slot_name)
    return slot_positions(conn, [slot_name]).get(slot_name)


def require_slot(position: dict[str, Any] | None, slot_name: str) -> dict[str, Any]:
    if position is None:
        raise DmsError(f"replication slot {slot_name} does not exist on the source; DMS cannot continue without "
                       "it (recreate the slot and restart the migration from the initial load)")
    if position["confirmed_flush_lsn"] is None:
        raise DmsError(f"replication slot {slot_name} is not a logical slot")
    return position


def validation_failures(conn: Any, *, control_schema: str, task_name: str, limit: int = 20) -> dict[str, Any]:
    """Rows of <control_schema>.awsdms_validation_failures_v1 for one task: totals by table and type, and
    the first ``limit`` keys. DETAILS (row values) is left in the table, out of logs and XCom."""
    check_pg_name(control_schema, "control_schema")
    with conn.cursor() as cur:
        cur.execute(sqlfiles.load("dms_validation_failures_exists"), {"schema": control_schema})
        if not cur.fetchone()[0]:
            return {"table_present": False, "total": 0, "by_table": [], "sample": []}
        cur.execute(sqlfiles.compose("dms_validation_failures_summary", schema=control_schema),
                    {"task_name": task_name})
        by_table = [{"table": f"{owner}.{table}", "failure_type": kind, "failures": int(count)}
                    for owner, table, kind, count in cur.fetchall()]
        cur.execute(sqlfiles.compose("dms_validation_failures_sample", schema=control_schema),
                    {"task_name": task_name, "limit": limit})
        sample = [{"table": f"{owner}.{table}", "key_type": key_type, "key": _cap(key, 200),
                   "failure_type": kind, "failure_time": at.isoformat() if at else None}
                  for owner, table, key_type, key, kind, at in cur.fetchall()]
    return {"table_present": True, "total": sum(item["failures"] for item in by_table),
            "by_table": by_table, "sample": sample}


def _cap(text: Any, limit: int) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


# ---------------------------------------------------------------------------------------------
# The waits' decisions
# ---------------------------------------------------------------------------------------------

def cdc_latency_state(*, dms: Any, cloudwatch: Any, source_conn: Any, replication_task_arn: str,
                      replication_instance_id: str, slot_name: str, max_latency_seconds: float,
                      consecutive_datapoints: int, max_slot_lag_bytes: int, now: datetime,
                      period_seconds: int = 60, lookback_seconds: int = 900) -> tuple[bool, dict[str, Any]]:
    """CDC is caught up when the latency metrics say so AND the source slot agrees.

    The slot check keeps a quiet metric (no datapoints, or a stalled task reporting zeros) from
    passing: the slot's confirmed_flush_lsn must be within ``max_slot_lag_bytes`` of the WAL position.
    """
    task = describe_task(dms, replication_task_arn)
    if task is None:
        raise DmsError(f"replication task {replication_task_arn} was not found")
    status = task["Status"]
    if status in ("failed", "stopped", "stopping", "deleting"):
        raise DmsError(f"replication task {task['ReplicationTaskIdentifier']} is {status}{task_failure(task)}")
    metrics = cdc_metrics(cloudwatch, replication_instance_id=replication_instance_id,
                          task_resource_id=task_resource_id(replication_task_arn), now=now,
                          lookback_seconds=lookback_seconds, period_seconds=period_seconds)
    metrics_ready, info = evaluate_latency(metrics["source"], metrics["target"],
                                           max_latency_seconds=max_latency_seconds,
                                           consecutive_datapoints=consecutive_datapoints)
    slot = require_slot(slot_position(source_conn, slot_name), slot_name)
    slot_ready = slot["lag_bytes"] <= max_slot_lag_bytes
    incoming = metrics["incoming"][0][1] if metrics["incoming"] else None
    payload = {
        "task_status": status,
        **info,
        "incoming_changes": incoming,
        "slot": {"slot_name": slot_name, "confirmed_flush_lsn": slot["confirmed_flush_lsn"],
                 "current_lsn": slot["current_lsn"], "lag_bytes": int(slot["lag_bytes"]), "active": slot["active"],
                 "max_lag_bytes": max_slot_lag_bytes},
    }
    if status != "running":
        payload["reason"] = f"task is {status}, not running yet"
        return False, payload
    if metrics_ready and not slot_ready:
        payload["reason"] = (f"metrics are quiet but slot {slot_name} is {int(slot['lag_bytes'])} bytes behind the "
                             f"WAL (max {max_slot_lag_bytes})")
    return metrics_ready and slot_ready, payload


def validation_state(*, dms: Any, target_conn: Any, replication_task_arn: str, control_schema: str,
                     expected_tables: Iterable[str] | None = None, max_reported: int = 20,
                     source_conn: Any = None, slot_name: str | None = None, cdc_wait_s: float = 15.0,
                     max_rechecked: int = 50, database: str | None = None) -> tuple[bool, dict[str, Any]]:
    """Validation is clean when every table is 'Validated' and no failure row of the task stands.

    DMS cannot validate rows that change while it compares them (it suspends them) and records rows it
    compared mid-change in <control_schema>.awsdms_validation_failures_v1. With ``source_conn`` (and the
    task's ``slot_name``) each recorded key is compared again on source and target (``recheck_rows``,
    the way the native validation treats in-flux chunks): a row that now matches is settled, one whose
    source keeps changing is waited for, and one that differs while its source stayed unchanged and
    CDC applied past it fails. A 'Mismatched records' or 'Suspended records' table counts as validated
    once every key recorded for it settled. Without ``source_conn`` any failure row fails at once.

    Raises DmsValidationFailed, with table, key and failure type (capped), when it cannot become clean.
    """
    tables = table_statistics(dms, replication_task_arn)
    task_name = task_resource_id(replication_task_arn)
    failures = validation_failures(target_conn, control_schema=control_schema, task_name=task_name,
                                   limit=max_reported)
    by_state: dict[str, list[str]] = {}
    failed_tables, unsettled_tables = [], {}
    for table in tables:
        name = f"{table.get('SchemaName')}.{table.get('TableName')}"
        state = table.get("ValidationState") or "unknown"
        by_state.setdefault(state, []).append(name)
        summary = (f"{name} ({state}, {int(table.get('ValidationFailedRecords') or 0)} failed, "
                   f"{int(table.get('ValidationSuspendedRecords') or 0)} suspended)")
        if state in RECHECKABLE_STATES and source_conn is not None:
            unsettled_tables[name] = table
        elif state in VALIDATION_FAILED_STATES:
            failed_tables.append(summary)
    payload: dict[str, Any] = {
        "task_name": task_name,
        "tables": len(tables),
        "states": {state: len(names) for state, names in sorted(by_state.items())},
        "failures": failures["total"],
    }
    if database is not None:  # what the report shows per database
        payload.update(database=database, rows_compared=rows_validated(tables))
    if failed_tables or (failures["total"] and source_conn is None):
        raise DmsValidationFailed(_validation_message(task_name, control_schema, failed_tables, failures,
                                                      max_reported))
    waiting: list[str] = []
    if failures["total"]:
        keys = failure_keys(target_conn, control_schema=control_schema, task_name=task_name, limit=max_rechecked)
        outcome = recheck_rows(source_conn, target_conn, keys, slot_name=slot_name, cdc_wait_s=cdc_wait_s)
        payload["rechecked"] = {state: len(items) for state, items in outcome.items()}
        if outcome["persistent"]:
            raise DmsValidationFailed(_persistent_message(task_name, control_schema, outcome["persistent"],
                                                          max_reported))
        unsettled_keys = outcome["in_flux"] + outcome["cdc_behind"]
        if unsettled_keys:
            waiting.append(f"{len(unsettled_keys)} row(s) DMS could not validate are still changing or not applied "
                           f"yet ({', '.join(k['table'] + ' ' + k['key'] for k in unsettled_keys[:3])}): rechecking")
        if failures["total"] > len(keys):
            waiting.append(f"{failures['total'] - len(keys)} more failure row(s) to recheck")
        settled_tables = {item["table"] for item in outcome["settled"]} - {k["table"] for k in unsettled_keys}
        for name in settled_tables & set(unsettled_tables):
            del unsettled_tables[name]  # every key DMS recorded for it matches again
    for name, table in unsettled_tables.items():
        waiting.append(f"{name} is {table.get('ValidationState')} ({int(table.get('ValidationSuspendedRecords') or 0)} "
                       f"suspended) with no settled key recorded: waiting for DMS to revalidate it")
    missing = sorted(set(expected_tables or ()) - {f"{t.get('SchemaName')}.{t.get('TableName')}" for t in tables})
    pending = sorted(name for state, names in by_state.items() if state not in ("Validated", *RECHECKABLE_STATES)
                     for name in names)
    if not tables:
        payload["reason"] = "DMS reports no table statistics yet"
    elif missing:
        payload["reason"] = f"{len(missing)} table(s) not reported yet: {', '.join(missing[:max_reported])}"
    elif pending:
        payload["reason"] = f"{len(pending)} table(s) not validated yet: {', '.join(pending[:max_reported])}"
    elif waiting:
        payload["reason"] = "; ".join(waiting)
    else:
        settled = payload.get("rechecked", {}).get("settled", 0)
        payload["reason"] = (f"all {len(tables)} table(s) validated, no failure rows" if not failures["total"] else
                             f"all {len(tables)} table(s) validated; the {settled} row(s) DMS recorded while they "
                             f"changed match on source and target now")
        return True, payload
    return False, payload


def rows_validated(tables: list[dict]) -> int:
    """Rows DMS validated, from its table statistics: rows it loaded or changed, less those still pending,
    failed or suspended (DMS reports no validated-row count of its own)."""
    total = 0
    for table in tables:
        changed = sum(int(table.get(key) or 0) for key in ("FullLoadRows", "Inserts", "Updates"))
        open_rows = sum(int(table.get(key) or 0) for key in ("ValidationPendingRecords", "ValidationFailedRecords",
                                                             "ValidationSuspendedRecords"))
        total += max(0, changed - open_rows)
    return total


def failure_keys(conn: Any, *, control_schema: str, task_name: str, limit: int) -> list[dict[str, str]]:
    """The distinct (table, key) of the task's failure rows, oldest first, at most ``limit``."""
    check_pg_name(control_schema, "control_schema")
    rows = conn.execute(sqlfiles.compose("dms_validation_failures_keys", schema=control_schema),
                        {"task_name": task_name, "limit": limit}).fetchall()
    return [{"schema": owner, "name": table, "table": f"{owner}.{table}", "key": key} for owner, table, key, _ in rows]


def _row_by_key(conn: Any, item: dict[str, str]) -> tuple[str, str] | None | str:
    try:
        json.loads(item["key"])
    except ValueError:
        return "unreadable"
    query = sqlfiles.compose("dms_validation_row_by_key", table=Identifier(item["schema"], item["name"]))
    rows = conn.execute(query, {"key": item["key"]}).fetchall()
    return tuple(rows[0]) if len(rows) == 1 else None


def recheck_rows(source_conn: Any, target_conn: Any, keys: list[dict[str, str]], *, slot_name: str | None,
                 cdc_wait_s: float = 15.0) -> dict[str, list[dict[str, str]]]:
    """Compare each recorded key again: read the source (S1) and its WAL position, wait until CDC applied
    past it (the slot's confirmed position), read the target (T) and the source again (S2).

    settled: T equals S1 or S2. persistent: S1 and S2 equal, row version included, CDC applied, T
    differs. in_flux: the source changed in between. cdc_behind: CDC did not apply past S1 in time.
    """
    outcome: dict[str, list[dict[str, str]]] = {"settled": [], "persistent": [], "in_flux": [], "cdc_behind": []}
    if not keys:
        return outcome
    first = [_row_by_key(source_conn, item) for item in keys]
    position = wal_position(source_conn)
    applied = cdc_applied_past(source_conn, slot_name, position, cdc_wait_s) if slot_name else False
    for item, s1 in zip(keys, first, strict=True):
        target = _row_by_key(target_conn, item)
        s2 = _row_by_key(source_conn, item)
        if "unreadable" in (s1, target, s2):
            outcome["persistent"].append({**item, "why": "its key is not a JSON object of key columns"})
            continue
        source_values = {row[0] if row else None for row in (s1, s2)}
        if (target[0] if target else None) in source_values:
            outcome["settled"].append(item)
        elif not applied:
            outcome["cdc_behind"].append(item)
        elif s1 == s2:
            outcome["persistent"].append({**item, "why": "differs while the source row stayed unchanged and CDC "
                                                         "applied past it"})
        else:
            outcome["in_flux"].append(item)
    return outcome


def _persistent_message(task_name: str, control_schema: str, rows: list[dict[str, str]], cap: int) -> str:
    shown = "; ".join(f"{r['table']} {r['key']} ({r['why']})" for r in rows[:cap])
    more = f"; and {len(rows) - cap} more" if len(rows) > cap else ""
    return (f"DMS validation failed for task {task_name}: {len(rows)} row(s) recorded in {control_schema}."
            f"{VALIDATION_FAILURES_TABLE} still differ on a quiet source: {shown}{more}. Compare those rows on "
            f"source and target, fix them (or reload the tables), revalidate, and clear the task's rows from "
            f"{control_schema}.{VALIDATION_FAILURES_TABLE} before rerunning.")


def _validation_message(task_name: str, control_schema: str, failed_tables: list[str], failures: dict,
                        cap: int) -> str:
    parts = [f"DMS validation failed for task {task_name}."]
    if failed_tables:
        more = f"; and {len(failed_tables) - cap} more" if len(failed_tables) > cap else ""
        shown = "; ".join(failed_tables[:cap]) + more
        parts.append(f"{len(failed_tables)} table(s) cannot validate: {shown}.")
    if failures["total"]:
        groups = ", ".join(f"{g['table']} {g['failure_type']} x{g['failures']}" for g in failures["by_table"][:cap])
        if len(failures["by_table"]) > cap:
            groups += f", and {len(failures['by_table']) - cap} more table/type group(s)"
        keys = "; ".join(f"{s['table']} [{s['failure_type']}] {s['key_type']} {s['key']}" for s in failures["sample"])
        parts.append(f"{failures['total']} row(s) in {control_schema}.{VALIDATION_FAILURES_TABLE}: {groups}.")
        parts.append(f"First keys: {keys}.")
    parts.append("Compare those rows on source and target, fix them (or reload the tables), revalidate, and "
                 f"clear the task's rows from {control_schema}.{VALIDATION_FAILURES_TABLE} before rerunning.")
    return " ".join(parts)

