"""The triggerer's side of the lag and validation waits (triggers.fleet, triggers.poll) on real servers.

PostgreSQL is real (two throwaway servers); Airflow connections come from AIRFLOW_CONN_* variables.
Nothing of the project is stood in: the triggers run on an asyncio loop as the triggerer runs them.
"""

from __future__ import annotations

import asyncio
import sys
import threading

import psycopg
import pytest

from migration.validation import run_key, run_validation
from triggers import fleet
from triggers.checks import poll_native_cdc_lag
from triggers.poll import PollTrigger

pytestmark = pytest.mark.integration

CONTROL = "fleet_ctl"
RUN = "manual__fleet"
DATABASES = ("d1", "d2")


def connect(server, dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(server.conninfo(dbname), autocommit=True)


@pytest.fixture(scope="module")
def servers(pg_servers):
    """A source with a logical slot per wait and a target with a subscription per wait (not connected), in two
    databases each; a small table whose row 7 differs on the target."""
    source, target = pg_servers.new("fleetsrc"), pg_servers.new("fleettgt")
    for server in (source, target):
        with connect(server) as conn:
            for db in DATABASES:
                conn.execute(f"CREATE DATABASE {db}")
    for db in DATABASES:
        with connect(source, db) as src, connect(target, db) as tgt:
            for conn in (src, tgt):
                conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
                conn.execute("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 300) g")
            tgt.execute("UPDATE t SET v = 'differs' WHERE id = 7")
            for i in range(3):
                src.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (f"{db}_slot{i}",))
                tgt.execute(f"CREATE SUBSCRIPTION {db}_sub{i} CONNECTION '{source.conninfo(db)}' "
                            "PUBLICATION p WITH (connect = false)")
    return source, target


@pytest.fixture
def conns(servers, monkeypatch):
    source, target = servers
    monkeypatch.setenv("AIRFLOW_CONN_FLEET_SRC", f"postgres://postgres@127.0.0.1:{source.port}/postgres")
    monkeypatch.setenv("AIRFLOW_CONN_FLEET_TGT", f"postgres://postgres@127.0.0.1:{target.port}/postgres")
    return source, target


def lag_kwargs(db: str, i: int) -> dict:
    return {"source_conn_id": "fleet_src", "target_conn_id": "fleet_tgt", "database": db,
            "slot_name": f"{db}_slot{i}", "subscription": f"{db}_sub{i}", "max_lag_bytes": 1 << 20,
            "max_apply_age_s": 60.0, "control_schema": CONTROL, "schemas": ["public"]}


def project_sessions(server, databases: tuple[str, ...] | None = None) -> int:
    only = list(databases) if databases else None
    with connect(server) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg-account-migration'"
                            " AND (%s::text[] IS NULL OR datname = ANY (%s))", (only, only)).fetchone()[0]


def test_lag_checks_of_many_waits_share_one_kept_connection_per_server_and_match_the_plain_check(conns):
    source, target = conns
    waits = [lag_kwargs(db, i) for db in DATABASES for i in range(3)]

    async def twice() -> tuple[list, list, int, int]:
        first = await asyncio.gather(*(fleet.native_cdc_lag(**kw) for kw in waits))
        second = await asyncio.gather(*(fleet.native_cdc_lag(**kw) for kw in waits))
        sessions = project_sessions(source), project_sessions(target)
        in_migrated = project_sessions(source, DATABASES)
        await fleet.close_all()
        return first, second, *sessions, in_migrated

    first, second, source_sessions, target_sessions, in_migrated = asyncio.run(twice())
    # The kept source connection is not in a migrated database, where the cutover's drain would refuse it.
    assert in_migrated == 0
    # Slots and subscriptions are read over one connection per server; samples over one per target database.
    assert source_sessions == 1 and target_sessions == 1 + len(DATABASES), (source_sessions, target_sessions)
    for kw, (done, payload) in zip(waits, first, strict=True):
        plain_done, plain = poll_native_cdc_lag(**kw)
        assert done is plain_done is False
        for field in ("slot_active", "subscription_enabled", "worker_running", "apply_error_count", "database"):
            assert payload[field] == plain[field], (field, payload, plain)
        assert payload["confirmed_flush_lsn"] == plain["confirmed_flush_lsn"]
    assert all(not done for done, _ in second)
    with connect(target, "d1") as tgt:
        samples = tgt.execute(f"SELECT count(*) FROM {CONTROL}.cdc_lag_samples WHERE database = 'd1'").fetchone()[0]
    # Two async rounds and one plain check per wait of d1, each kept as a sample.
    assert samples == 3 * 3


def test_a_missing_slot_is_an_error_naming_it(conns):
    async def check():
        try:
            return await fleet.native_cdc_lag(**{**lag_kwargs("d1", 0), "slot_name": "no_such_slot"})
        finally:
            await fleet.close_all()

    with pytest.raises(Exception, match="slot no_such_slot does not exist on the source"):
        asyncio.run(check())


def validation_trigger(validation_id: str, polls: int = 3) -> PollTrigger:
    from sensors.validation import ValidationCleanSensor

    sensor = ValidationCleanSensor(task_id="wait_validation_clean", source_conn_id="fleet_src",
                                   target_conn_id="fleet_tgt", database="d2", schemas=["public"],
                                   validation_id=validation_id, control_schema=CONTROL, chunk_rows=100,
                                   max_rechecks=polls, run_id=RUN, poll_interval=0.05)
    return PollTrigger(check=sensor.poll_path, kwargs=sensor.poll_kwargs({}), poke_interval=0.05,
                       async_check=sensor.async_poll_path, async_kwargs=sensor.async_poll_kwargs())


def first_event(trigger: PollTrigger) -> dict:
    async def run():
        try:
            async for event in trigger.run():
                return event.payload
        finally:
            await fleet.close_all()
    return asyncio.run(run())


def passes_started(target, validation_id: str) -> list:
    with connect(target, "d2") as tgt:
        return tgt.execute(f"SELECT started_at, completed_at FROM {CONTROL}.validation_runs WHERE validation_id = %s",
                           (run_key(validation_id, RUN),)).fetchall()


def test_the_triggerer_only_watches_a_validation_and_resumes_the_worker_for_passes_and_rechecks(conns):
    source, target = conns
    # No pass of this run yet: the wait hands the full pass to the worker and compares nothing itself.
    event = first_event(validation_trigger("never passed"))
    assert event["status"] == "resume" and "no validation state" in event["message"], event
    with connect(source, "d2") as src, connect(target, "d2") as tgt:
        result = run_validation(src, tgt, schemas=["public"], control_schema=CONTROL, validation_id="watched",
                                run_id=RUN, chunk_rows=100)
    assert not result["clean"] and result["mismatched_chunks"] == 1, result
    before = passes_started(target, "watched")
    event = first_event(validation_trigger("never passed"))
    assert event["status"] == "resume" and "no complete pass" in event["message"], event

    # The difference stays: polls 1 and 2 only watch, poll 3 hands the proving recheck to the worker.
    event = first_event(validation_trigger("watched", polls=3))
    assert event["status"] == "resume" and "1 chunk(s) still differ after 3 polls" in event["message"], event
    assert event["attempts"] == 3
    assert passes_started(target, "watched") == before  # no pass started, none completed again

    # Fixed on the target: the next poll sees the chunk match and the worker confirms it.
    with connect(source, "d2") as src, connect(target, "d2") as tgt:
        tgt.execute("UPDATE t SET v = %s WHERE id = 7", (src.execute("SELECT v FROM t WHERE id = 7").fetchone()[0],))
    event = first_event(validation_trigger("watched"))
    assert event["status"] == "resume" and "every open chunk matches now" in event["message"], event
    assert event["attempts"] == 1
    with connect(target, "d2") as tgt:
        tgt.execute("UPDATE t SET v = 'differs' WHERE id = 7")


def test_the_sensor_resumed_by_the_triggerer_checks_in_the_worker(conns):
    from airflow.sdk.exceptions import TaskDeferred

    from sensors.validation import ValidationCleanSensor

    sensor = ValidationCleanSensor(task_id="wait_validation_clean", source_conn_id="fleet_src",
                                   target_conn_id="fleet_tgt", database="d2", schemas=["public"],
                                   validation_id="resumed", control_schema=CONTROL, chunk_rows=100, run_id=RUN)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute_complete({}, {"status": "resume", "message": "no complete pass", "attempts": 1})
    # The worker ran the full pass (the difference at id 7 is recorded) and deferred again to the async watch.
    _, trigger = deferred.value.trigger.serialize()
    assert trigger["async_check"] == "triggers.fleet:native_validation"
    assert trigger["async_kwargs"] == {"watch": {"polls": 3}}
    assert passes_started(conns[1], "resumed")[0][1] is not None


def test_the_check_module_is_imported_off_the_event_loop(conns, tmp_path, monkeypatch):
    (tmp_path / "fleet_probe_module.py").write_text(
        "import threading\nIMPORTED_IN = threading.current_thread().name\n"
        "def check(**kwargs):\n    return True, {'imported_in': IMPORTED_IN}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("fleet_probe_module", None)
    event = first_event(PollTrigger(check="fleet_probe_module:check", kwargs={}, poke_interval=0.01))
    assert event["status"] == "success"
    assert event["payload"]["imported_in"] != threading.main_thread().name
