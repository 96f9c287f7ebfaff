"""DMS CDC latency and validation sensors (through their triggers), the validation-failures query and the
cutover drain, with real PostgreSQL servers for the source slot and the target's control tables.

Stand-ins, and why:
- AWS is moto server (tests/aws/conftest.py); its DMS gaps are closed by the extension in
  tests/aws/dms_fixtures.py (task status moves, describe_table_statistics, ...; listed there).
  CloudWatch in moto returns only what a test puts, so each test puts the CDC metrics DMS would publish.
- DMS itself does not run, so nothing reads the source slot. Where a test needs DMS to confirm
  progress, a stand-in consumer does what DMS does to the slot: it confirms (pg_replication_slot_advance)
  up to the end of the last transaction it has read (pg_logical_slot_peek_changes), never further.
- The target's <control_schema>.awsdms_validation_failures_v1 is created by the test with DMS's
  documented columns (TASK_NAME, TABLE_OWNER, TABLE_NAME, FAILURE_TIME, KEY_TYPE, KEY, FAILURE_TYPE,
  DETAILS), since DMS creates it on a real target.
PostgreSQL is never stood in; the project's own code is never stood in.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
from airflow.sdk.exceptions import AirflowException, TaskDeferred
from dms_fixtures import dms_moto, running_cdc_task  # noqa: F401 - fixture

from connections.postgres import connect
from migration.dms import cutover as dms_cutover
from migration.dms import errors as dms_errors
from migration.dms import monitoring as dms_monitoring
from migration.dms.cutover import DmsCdcDatabase, DmsCdcEngine
from migration.lsn import LSN
from sensors.dms import DmsCdcLatencySensor, DmsValidationSensor
from triggers.checks import poll_dms_cdc_latency, poll_dms_validation

pytestmark = [pytest.mark.aws, pytest.mark.integration]

DATABASE = "app"
SLOT = "mig_orders_mig_app"
CONTROL = "migration_control"
TASK_ARN = "arn:aws:dms:us-east-1:222222222222:task:ABC"

FAILURES_TABLE_DDL = """
CREATE TABLE migration_control.awsdms_validation_failures_v1 (
    "TASK_NAME" varchar(128) NOT NULL,
    "TABLE_OWNER" varchar(128) NOT NULL,
    "TABLE_NAME" varchar(128) NOT NULL,
    "FAILURE_TIME" timestamp(3) NOT NULL,
    "KEY_TYPE" varchar(128) NOT NULL,
    "KEY" text NOT NULL,
    "FAILURE_TYPE" varchar(128) NOT NULL,
    "DETAILS" varchar(8000) NOT NULL
)
"""


@pytest.fixture(scope="module")
def servers(pg_servers):
    source, target = pg_servers.new("source"), pg_servers.new("target")
    for server in (source, target):
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        with psycopg.connect(server.conninfo(DATABASE), autocommit=True) as conn:
            conn.execute("CREATE SCHEMA dms_sample")
            conn.execute("CREATE TABLE dms_sample.orders (id bigint PRIMARY KEY, note text)")
            conn.execute(f"CREATE SCHEMA {CONTROL}")
    with psycopg.connect(target.conninfo(DATABASE), autocommit=True) as conn:
        conn.execute(FAILURES_TABLE_DDL)
    return {"source": source, "target": target}


@pytest.fixture
def pg(servers, monkeypatch):
    """Airflow connections to both servers (the target's host is replaced at run time, like a clone's)."""
    monkeypatch.setenv("AIRFLOW_CONN_SOURCE_PG", json.dumps({
        "conn_type": "postgres", "host": "127.0.0.1", "port": servers["source"].port, "login": "postgres",
        "schema": "postgres"}))
    monkeypatch.setenv("AIRFLOW_CONN_TARGET_PG", json.dumps({
        "conn_type": "postgres", "host": "clone-not-known-yet.invalid", "port": 1, "login": "postgres",
        "schema": "postgres"}))
    # The servers commit asynchronously for speed; the test's own commits are made durable at once so the
    # slot (which decodes only flushed WAL) sees them as soon as they return.
    source = psycopg.connect(servers["source"].conninfo(DATABASE), autocommit=True,
                             options="-c synchronous_commit=on")
    target = psycopg.connect(servers["target"].conninfo(DATABASE), autocommit=True)
    source.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                   (SLOT,))
    source.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (SLOT,))
    source.execute("TRUNCATE dms_sample.orders")
    target.execute(f"TRUNCATE {CONTROL}.awsdms_validation_failures_v1")
    yield {"source": source, "target": target, "target_port": servers["target"].port,
           "source_server": servers["source"]}
    source.close()
    target.close()


def client(service: str):
    return AwsBaseHook(aws_conn_id="aws_target", client_type=service).get_conn()


def put_latency(task: dict, minutes_ago: int, source: float, target: float, incoming: float = 0) -> None:
    at = datetime.fromtimestamp(int(datetime.now(UTC).timestamp()) // 60 * 60, UTC) - timedelta(minutes=minutes_ago)
    dimensions = [{"Name": "ReplicationInstanceIdentifier", "Value": task["instance_id"]},
                  {"Name": "ReplicationTaskIdentifier", "Value": task["resource_id"]}]
    client("cloudwatch").put_metric_data(Namespace="AWS/DMS", MetricData=[
        {"MetricName": name, "Dimensions": dimensions, "Timestamp": at + timedelta(seconds=5), "Value": value}
        for name, value in (("CDCLatencySource", source), ("CDCLatencyTarget", target),
                            ("CDCIncomingChanges", incoming))])


def confirm_like_dms(conn: psycopg.Connection, slot: str = SLOT) -> LSN | None:
    """The stand-in consumer: confirm up to the end of the last transaction in the slot, never further."""
    rows = conn.execute("SELECT lsn::text FROM pg_logical_slot_peek_changes(%s, NULL, NULL) WHERE data LIKE 'COMMIT%%'",
                        (slot,)).fetchall()
    if not rows:
        return None
    last = rows[-1][0]
    conn.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (slot, last))
    return LSN(last)


def rebuild(trigger):
    """The trigger as the triggerer gets it: from serialize(), through JSON."""
    path, kwargs = trigger.serialize()
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))


def run_trigger(trigger, *, after_checks: int, count_checks, change) -> dict:
    """Run the rebuilt trigger; once it has made ``after_checks`` checks, apply ``change``; return its event."""
    rebuilt = rebuild(trigger)

    async def main():
        async def first():
            async for event in rebuilt.run():
                return event

        pending = asyncio.create_task(first())
        while count_checks() < after_checks and not pending.done():
            await asyncio.sleep(0.01)
        assert not pending.done(), "the trigger finished before the state changed"
        change()
        return (await asyncio.wait_for(pending, 60)).payload

    return asyncio.run(main())


# -- CDC latency ---------------------------------------------------------------------------------

def latency_sensor(task: dict, **kwargs) -> DmsCdcLatencySensor:
    return DmsCdcLatencySensor(
        task_id="wait_cdc_latency", aws_conn_id="aws_target", replication_task_arn=task["arn"],
        replication_instance_id=task["instance_id"], source_conn_id="source_pg", database=DATABASE,
        slot_name=SLOT, max_latency_seconds=5, consecutive_datapoints=3, poll_interval=0.05, **kwargs)


def test_latency_sensor_defers_then_its_trigger_finishes_when_n_datapoints_are_low(dms_moto, pg):  # noqa: F811
    task = running_cdc_task(client("dms"))
    put_latency(task, 3, 40, 20, incoming=900)
    put_latency(task, 2, 2, 1, incoming=12)
    put_latency(task, 1, 1, 1, incoming=3)
    sensor = latency_sensor(task)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert trigger.serialize()[1]["check"] == "triggers.checks:poll_dms_cdc_latency"
    seen = len(dms_moto.calls("DescribeReplicationTasks"))
    event = run_trigger(trigger, after_checks=seen + 1,
                        count_checks=lambda: len(dms_moto.calls("DescribeReplicationTasks")),
                        change=lambda: put_latency(task, 0, 0.5, 1, incoming=0))
    assert event["status"] == "success", event
    payload = sensor.execute_complete({}, event=event)
    assert [p["latency_seconds"] for p in payload["datapoints"]] == [1.5, 2, 3]
    assert payload["incoming_changes"] == 0
    assert payload["slot"]["slot_name"] == SLOT and payload["slot"]["lag_bytes"] <= 16 * 1024 * 1024
    assert payload["task_status"] == "running"


def test_quiet_metrics_do_not_hide_a_stalled_slot(dms_moto, pg):  # noqa: F811
    task = running_cdc_task(client("dms"))
    for minutes_ago in (2, 1, 0):
        put_latency(task, minutes_ago, 0, 0)
    pg["source"].execute("INSERT INTO dms_sample.orders SELECT g, repeat('x', 200) FROM generate_series(1, 200) g")
    kwargs = {"aws_conn_id": "aws_target", "replication_task_arn": task["arn"],
              "replication_instance_id": task["instance_id"], "source_conn_id": "source_pg", "database": DATABASE,
              "slot_name": SLOT, "max_latency_seconds": 5, "consecutive_datapoints": 3, "max_slot_lag_bytes": 4096}
    ready, payload = poll_dms_cdc_latency(**kwargs)
    assert not ready
    assert payload["reason"].startswith(f"metrics are quiet but slot {SLOT} is ")
    assert payload["slot"]["lag_bytes"] > 4096
    assert confirm_like_dms(pg["source"]) is not None
    ready, payload = poll_dms_cdc_latency(**kwargs)
    assert ready, payload


def test_latency_check_fails_on_a_failed_task_or_a_missing_slot(dms_moto, pg):  # noqa: F811
    task = running_cdc_task(client("dms"))
    kwargs = {"aws_conn_id": "aws_target", "replication_task_arn": task["arn"],
              "replication_instance_id": task["instance_id"], "source_conn_id": "source_pg", "database": DATABASE,
              "slot_name": "mig_other_app"}
    with pytest.raises(dms_errors.DmsError, match="replication slot mig_other_app does not exist on the source"):
        poll_dms_cdc_latency(**kwargs)
    dms_moto.fail_task(task["arn"], "Last Error Task error notification received from subtask 0")
    with pytest.raises(dms_errors.DmsError, match="is failed .*FATAL_ERROR.*Task error notification"):
        poll_dms_cdc_latency(**kwargs)


# -- validation ----------------------------------------------------------------------------------

def stats(*states: tuple[str, str, str]) -> list[dict]:
    return [{"SchemaName": schema, "TableName": table, "ValidationState": state, "Inserts": 1, "Updates": 0,
             "Deletes": 0, "Ddls": 0, "ValidationFailedRecords": 0, "ValidationSuspendedRecords": 0}
            for schema, table, state in states]


def add_failures(conn: psycopg.Connection, task_name: str, rows: list[tuple[str, str, str]]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            f'INSERT INTO {CONTROL}.awsdms_validation_failures_v1 VALUES '
            "(%s, 'dms_sample', %s, now() + make_interval(secs => %s), 'Row', %s, %s, '{\"note\": \"differs\"}')",
            [(task_name, table, i, key, kind) for i, (table, key, kind) in enumerate(rows)])


def validation_sensor(task: dict, pg: dict, **kwargs) -> DmsValidationSensor:
    return DmsValidationSensor(
        task_id="wait_validation", aws_conn_id="aws_target", replication_task_arn=task["arn"],
        target_conn_id="target_pg", database=DATABASE, target_host="127.0.0.1", target_port=str(pg["target_port"]),
        control_schema=CONTROL, poll_interval=0.05, **kwargs)


def test_validation_sensor_defers_then_its_trigger_finishes_when_all_tables_validate(dms_moto, pg):  # noqa: F811
    task = running_cdc_task(client("dms"))
    dms_moto.set_table_statistics(task["arn"], stats(("dms_sample", "orders", "Validated"),
                                                     ("dms_sample", "items", "Pending records")))
    # Another task's failures share the table; they must not count for this one.
    add_failures(pg["target"], "SOMEOTHERTASKRESOURCEID", [("orders", '{"id": 1}', "RECORD_DIFF")])
    sensor = validation_sensor(task, pg, expected_tables=["dms_sample.orders", "dms_sample.items"])
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    kwargs = deferred.value.trigger.serialize()[1]["kwargs"]
    assert kwargs["target_host"] == "127.0.0.1" and kwargs["target_port"] == pg["target_port"]
    seen = len(dms_moto.calls("DescribeTableStatistics"))
    event = run_trigger(
        deferred.value.trigger, after_checks=seen + 1,
        count_checks=lambda: len(dms_moto.calls("DescribeTableStatistics")),
        change=lambda: dms_moto.set_table_statistics(task["arn"], stats(("dms_sample", "orders", "Validated"),
                                                                        ("dms_sample", "items", "Validated"))))
    assert event["status"] == "success", event
    payload = sensor.execute_complete({}, event=event)
    assert payload == {"task_name": task["resource_id"], "tables": 2, "states": {"Validated": 2}, "failures": 0,
                       "database": DATABASE, "rows_compared": 2,  # the report's rows validated, per database
                       "reason": "all 2 table(s) validated, no failure rows"}


def test_validation_waits_for_expected_tables_and_for_any_statistics(dms_moto, pg):  # noqa: F811
    task = running_cdc_task(client("dms"))
    check = {"aws_conn_id": "aws_target", "replication_task_arn": task["arn"], "target_conn_id": "target_pg",
             "database": DATABASE, "control_schema": CONTROL, "target_host": "127.0.0.1",
             "target_port": pg["target_port"], "expected_tables": ["dms_sample.orders", "dms_sample.items"]}
    ready, payload = poll_dms_validation(**check)
    assert not ready and payload["reason"] == "DMS reports no table statistics yet"
    dms_moto.set_table_statistics(task["arn"], stats(("dms_sample", "orders", "Validated")))
    ready, payload = poll_dms_validation(**check)
    assert not ready and payload["reason"] == "1 table(s) not reported yet: dms_sample.items"


def test_validation_failure_names_tables_keys_and_types_capped(dms_moto, pg):  # noqa: F811
    task = running_cdc_task(client("dms"))
    dms_moto.set_table_statistics(task["arn"], stats(("dms_sample", "orders", "Mismatched records"),
                                                     ("dms_sample", "items", "Validated")))
    add_failures(pg["target"], task["resource_id"], [
        ("orders", '{"id": 7}', "RECORD_DIFF"), ("orders", '{"id": 8}', "RECORD_DIFF"),
        ("orders", '{"id": 9}', "MISSING_TARGET"), ("items", '{"id": 3}', "MISSING_SOURCE"),
        ("orders", '{"id": 10}', "RECORD_DIFF")])
    sensor = validation_sensor(task, pg, max_reported=2)
    with pytest.raises(dms_errors.DmsValidationFailed) as failed:
        sensor.execute({})
    message = str(failed.value)
    assert f"DMS validation failed for task {task['resource_id']}" in message
    assert "dms_sample.orders (Mismatched records, 0 failed, 0 suspended)" in message
    assert f"5 row(s) in {CONTROL}.awsdms_validation_failures_v1" in message
    assert ("dms_sample.orders RECORD_DIFF x3, dms_sample.items MISSING_SOURCE x1, and 1 more table/type group(s)."
            in message)
    assert 'First keys: dms_sample.orders [RECORD_DIFF] Row {"id": 7}; dms_sample.orders [RECORD_DIFF] Row {"id": 8}.' \
        in message
    assert '{"id": 9}' not in message and "differs" not in message


def test_validation_failure_from_the_trigger_fails_the_sensor(dms_moto, pg):  # noqa: F811
    task = running_cdc_task(client("dms"))
    dms_moto.set_table_statistics(task["arn"], stats(("dms_sample", "orders", "Pending records")))
    sensor = validation_sensor(task, pg)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    seen = len(dms_moto.calls("DescribeTableStatistics"))
    event = run_trigger(
        deferred.value.trigger, after_checks=seen + 1,
        count_checks=lambda: len(dms_moto.calls("DescribeTableStatistics")),
        change=lambda: dms_moto.set_table_statistics(task["arn"], stats(("dms_sample", "orders", "Table error"))))
    assert event["status"] == "error"
    with pytest.raises(AirflowException, match=r"1 table\(s\) cannot validate: dms_sample.orders \(Table error"):
        sensor.execute_complete({}, event=event)


def test_validation_failures_query_on_real_postgresql(pg):
    add_failures(pg["target"], "TASKA", [("orders", '{"id": 1}', "RECORD_DIFF"), ("orders", '{"id": 2}', "RECORD_DIFF"),
                                         ("items", '{"id": 5}', "MISSING_TARGET")])
    add_failures(pg["target"], "TASKB", [("orders", '{"id": 1}', "MISSING_SOURCE")])
    result = dms_monitoring.validation_failures(pg["target"], control_schema=CONTROL, task_name="TASKA", limit=2)
    assert result["table_present"] is True and result["total"] == 3
    assert result["by_table"] == [
        {"table": "dms_sample.orders", "failure_type": "RECORD_DIFF", "failures": 2},
        {"table": "dms_sample.items", "failure_type": "MISSING_TARGET", "failures": 1}]
    assert [(s["table"], s["key_type"], s["key"], s["failure_type"]) for s in result["sample"]] == [
        ("dms_sample.orders", "Row", '{"id": 1}', "RECORD_DIFF"),
        ("dms_sample.orders", "Row", '{"id": 2}', "RECORD_DIFF")]
    assert dms_monitoring.validation_failures(pg["target"], control_schema=CONTROL, task_name="NONE")["total"] == 0
    absent = dms_monitoring.validation_failures(pg["target"], control_schema="no_such_schema", task_name="TASKA")
    assert absent == {"table_present": False, "total": 0, "by_table": [], "sample": []}


# -- cutover drain -------------------------------------------------------------------------------

def other_database_write(server) -> None:
    """WAL after the application's last change that this database's slot never decodes."""
    with psycopg.connect(server.conninfo("postgres"), autocommit=True, options="-c synchronous_commit=on") as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS noise (n int)")
        conn.execute("INSERT INTO noise VALUES (1)")


def final_lsn(conn: psycopg.Connection) -> LSN:
    return LSN(conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0])


def test_drain_returns_at_once_on_slot_proof_without_reading_cloudwatch(dms_moto, pg):  # noqa: F811
    task = running_cdc_task(client("dms"))
    pg["source"].execute("INSERT INTO dms_sample.orders VALUES (1, 'a'), (2, 'b')")
    final = final_lsn(pg["source"])
    confirmed = confirm_like_dms(pg["source"])
    assert confirmed >= final
    cloudwatch = client("cloudwatch")
    metric_reads = []
    cloudwatch.meta.events.register("before-call.cloudwatch.GetMetricData", lambda **_: metric_reads.append(1))
    engine = DmsCdcEngine(links=[DmsCdcDatabase(DATABASE, task["arn"], SLOT)], source_conn=pg["source"],
                          cloudwatch=cloudwatch, replication_instance_id=task["instance_id"], marker_schema=CONTROL)
    result = engine.drain(str(final), timeout=5)
    assert result["drained"] is True and result["proof"] == "slot" and result["checks"] == 1
    assert result["markers"] == {} and LSN(result["confirmed"][DATABASE]) >= final
    assert metric_reads == []


def test_drain_waits_for_dms_to_confirm_past_the_final_lsn_using_the_marker(dms_moto, pg):  # noqa: F811
    task = running_cdc_task(client("dms"))
    put_latency(task, 0, 0, 0, incoming=4)
    pg["source"].execute("INSERT INTO dms_sample.orders VALUES (3, 'c')")
    other_database_write(pg["source_server"])
    final = final_lsn(pg["source"])
    consumer = psycopg.connect(pg["source_server"].conninfo(DATABASE), autocommit=True)
    confirmations: list[LSN | None] = []

    def sleep_while_dms_works(_seconds: float) -> None:
        confirmations.append(confirm_like_dms(consumer))

    engine = DmsCdcEngine(links=[DmsCdcDatabase(DATABASE, task["arn"], SLOT)], source_conn=pg["source"],
                          cloudwatch=client("cloudwatch"), replication_instance_id=task["instance_id"],
                          marker_schema=CONTROL, sleep=sleep_while_dms_works)
    result = engine.drain(final, timeout=30)
    consumer.close()
    assert result["drained"] is True and result["checks"] == 2
    assert LSN(result["markers"][DATABASE]) >= final and LSN(result["confirmed"][DATABASE]) > final
    assert result["incoming_changes"] == {DATABASE: 4}
    assert confirmations and confirmations[0] > final
    row = pg["source"].execute(f"SELECT final_lsn::text FROM {CONTROL}.{dms_cutover.DRAIN_MARKER_TABLE}").fetchone()
    assert LSN(row[0]) == final


def test_drain_times_out_when_dms_cannot_confirm_past_the_final_lsn(pg):
    pg["source"].execute("INSERT INTO dms_sample.orders VALUES (4, 'd')")
    other_database_write(pg["source_server"])
    final = final_lsn(pg["source"])
    consumer = psycopg.connect(pg["source_server"].conninfo(DATABASE), autocommit=True)
    stop = threading.Event()
    engine = DmsCdcEngine(links=[DmsCdcDatabase(DATABASE, TASK_ARN, SLOT)], source_conn=pg["source"],
                          poll_interval=0.05, sleep=lambda s: (confirm_like_dms(consumer), stop.wait(s)))
    with pytest.raises(dms_errors.DmsDrainTimeout,
                       match=rf"final LSN {final} within 0.3 s: app: slot {SLOT} confirmed .* bytes behind"):
        engine.drain(final, timeout=0.3)
    consumer.close()
    confirmed = dms_monitoring.slot_position(pg["source"], SLOT)["confirmed_flush_lsn"]
    assert LSN(confirmed) < final


def test_engine_with_its_own_connections_drains_every_database_and_marks_only_the_lagging_one(
        dms_moto, pg):  # noqa: F811
    source_server = pg["source_server"]
    with psycopg.connect(source_server.conninfo(), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'app2'").fetchone():
            conn.execute("CREATE DATABASE app2")
    app2 = psycopg.connect(source_server.conninfo("app2"), autocommit=True, options="-c synchronous_commit=on")
    app2.execute(f"CREATE SCHEMA IF NOT EXISTS {CONTROL}")
    app2.execute("CREATE TABLE IF NOT EXISTS invoices (id bigint PRIMARY KEY)")
    app2.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                 "WHERE slot_name = 'mig_orders_mig_app2'")
    app2.execute("SELECT pg_create_logical_replication_slot('mig_orders_mig_app2', 'test_decoding')")
    first = running_cdc_task(client("dms"), instance_id="orders-mig-repl", task_id="orders-mig-app-cdc")
    second = running_cdc_task(client("dms"), instance_id="orders-mig-repl-2", task_id="orders-mig-app2-cdc")
    pg["source"].execute("INSERT INTO dms_sample.orders VALUES (6, 'f')")
    app2.execute("INSERT INTO invoices VALUES (1)")
    other_database_write(source_server)
    final = final_lsn(pg["source"])
    pg["source"].execute(f"SELECT pg_replication_slot_advance('{SLOT}', pg_current_wal_lsn())")
    consumer = psycopg.connect(source_server.conninfo("app2"), autocommit=True)
    engine = DmsCdcEngine.opening(
        connect=lambda database: connect("source_pg", dbname=database), dms=client("dms"),
        cloudwatch=client("cloudwatch"), replication_instance_id=first["instance_id"],
        marker_schema=CONTROL, sleep=lambda _s: confirm_like_dms(consumer, "mig_orders_mig_app2"),
        tasks=[{"database": DATABASE, "replication_task_arn": first["arn"], "slot_name": SLOT},
               {"database": "app2", "replication_task_arn": second["arn"], "slot_name": "mig_orders_mig_app2"}])
    try:
        prepared = engine.prepare()
        assert set(prepared) == {DATABASE, "app2"} and prepared["app2"]["task_status"] == "running"
        result = engine.drain(final, timeout=30)
        assert result["drained"] is True and set(result["markers"]) == {"app2"}
        assert all(LSN(lsn) >= final for lsn in result["confirmed"].values())
        stopped = engine.stop(timeout=30)
        assert {db: r["status"] for db, r in stopped.items()} == {DATABASE: "stopped", "app2": "stopped"}
    finally:
        engine.close()
        consumer.close()
        app2.execute("SELECT pg_drop_replication_slot('mig_orders_mig_app2')")
        app2.close()


def test_drain_reports_a_marker_it_could_not_write(pg):
    pg["source"].execute("INSERT INTO dms_sample.orders VALUES (5, 'e')")
    other_database_write(pg["source_server"])
    final = final_lsn(pg["source"])
    engine = DmsCdcEngine(links=[DmsCdcDatabase(DATABASE, TASK_ARN, SLOT)], source_conn=pg["source"],
                          marker_schema="no_such_schema", poll_interval=0.05)
    with pytest.raises(dms_errors.DmsDrainTimeout,
                       match=r"drain marker was not written in app \(InvalidSchemaName: schema "):
        engine.drain(final, timeout=0.2)


def test_dms_waits_poll_every_15_s_by_default_and_dms_poll_interval_seconds_sets_it(tmp_path):
    # Issue 11 item 8: the provider's defaults (60 s sensors, 30 s RDS wait) made each wait up to a minute late.
    from pathlib import Path

    import yaml

    from dag_factory import build_dag
    from migration.config import load_config
    from operators.aws_clone import RdsSetLogicalReplicationOperator
    from sensors.dms import DmsTaskRunningSensor

    ids = ("wait_in_sync.wait_cdc_lag", "wait_in_sync.wait_validation_clean", "start_cdc.wait_task_running")
    shipped = Path(__file__).resolve().parents[3] / "include" / "migrations" / "aurora_orders.yaml"
    dag = build_dag(load_config(shipped))
    assert [dag.get_task(task_id).poke_interval for task_id in ids] == [15, 15, 15]
    data = yaml.safe_load(shipped.read_text())
    data["dms"]["poll_interval_seconds"] = 7
    (tmp_path / "aurora_orders.yaml").write_text(yaml.safe_dump(data))
    dag = build_dag(load_config(tmp_path / "aurora_orders.yaml"))
    assert [dag.get_task(task_id).poke_interval for task_id in ids] == [7, 7, 7]
    assert dag.get_task("wait_in_sync.wait_validation_clean").poll_interval == 7  # what the trigger sleeps
    # The validation wait rechecks rows DMS could not validate on the source, through the task's slot.
    validation = dag.get_task("wait_in_sync.wait_validation_clean")
    assert validation.source_conn_id == "orders_source"
    assert DmsTaskRunningSensor(task_id="t", replication_task_arn=TASK_ARN).poke_interval == 15
    assert RdsSetLogicalReplicationOperator(task_id="t", aws_conn_id="a", db_type="cluster", db_identifier="c",
                                            enabled=True).poll_interval == 15
