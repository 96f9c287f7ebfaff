"""Reruns after a completed cutover, the Asset event it emits, and the approval page's measurement time.

A whole local migration runs with dag.test() (real servers, real pg_basebackup clone, real logical
replication; the approval answered through the REST API as in test_local_migration.py). Then, as a
user would in the UI:

1. `wait_in_sync.wait_cdc_lag` is cleared through `POST …/clearTaskInstances`. Airflow also clears its
   setup (`validate_run`) and the teardowns (`cleanup`, `report`); the cleared tasks run again in the same
   run, driven by Airflow's own scheduling decisions (`DagRun.update_state`, the loop `dag.test()` runs).
2. The whole run is run again under the same run id (`dag.test()` with the run's logical date and
   run_after: Airflow replaces the run and every task runs again, all XCom gone).

Each time the tasks that lead up to the cutover say "already cut over" and are skipped, the run ends
in success, no new Asset event is emitted, and the data, the fence and the report stay as they were.
A second test posts a bad conf to `POST …/dagRuns` and sees it refused before a run exists.
Nothing is stood in.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from migration import sample

pytestmark = pytest.mark.e2e

ASSET_URI = "x-pg-account-migration://e2e_rerun/app"
GUARDED_SKIPPED_ON_FULL_RERUN = ["preflight", "cutover.switch_over", "wait_in_sync.wait_cdc_lag", "database_moved.app"]


def _report_dir(dag_id: str, run_id: str) -> Path:
    return Path(os.environ["MIGRATION_REPORT_DIR"], dag_id, re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id))


def _asset_events(dag_id: str) -> list[dict]:
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return [{"uri": e.asset.uri, "task_id": e.source_task_id, "run_id": e.source_run_id, "extra": e.extra}
                for e in session.scalars(select(AssetEvent).where(AssetEvent.source_dag_id == dag_id))]


def _api():
    from airflow.api_fastapi.app import create_app
    from airflow.models import import_all_models
    from fastapi.testclient import TestClient

    import_all_models()
    return TestClient(create_app())


def _can_write_as_app(migration) -> bool:
    try:
        with migration.source_conn(user=sample.APP_ROLE) as conn:
            conn.execute("INSERT INTO dms_sample.person (full_name) VALUES ('after')")
        return True
    except psycopg.Error:
        return False


def _clear(dag_id: str, run_id: str, task_id: str) -> list[str]:
    """Clear one task of a finished run through the REST API, as the UI's Clear button does."""
    reply = _api().post(f"/api/v2/dags/{dag_id}/clearTaskInstances", json={
        "dry_run": False, "dag_run_id": run_id, "task_ids": [task_id], "only_failed": False,
        "include_upstream": False, "include_downstream": False})
    assert reply.status_code == 200, reply.text
    return sorted({ti["task_id"] for ti in reply.json()["task_instances"]})


def _run_cleared(dag, run_id: str, max_rounds: int = 200):
    """Run a cleared run's task instances to the end, as dag.test() does for a new run."""
    from airflow import settings
    from airflow.models.dagrun import DagRun
    from airflow.sdk.definitions.dag import _run_task
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.state import DagRunState, TaskInstanceState
    from sqlalchemy import select

    session = settings.Session()
    dr = session.scalar(select(DagRun).where(DagRun.dag_id == dag.dag_id, DagRun.run_id == run_id))
    dr.dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    dr.state = DagRunState.RUNNING
    session.commit()
    for _ in range(max_rounds):
        if dr.state != DagRunState.RUNNING:
            return dr
        session.expire_all()
        schedulable, _ = dr.update_state(session=session)
        for ti in schedulable:
            ti.try_number += 1
            ti.state = TaskInstanceState.SCHEDULED
        session.commit()
        for ti in [t for t in dr.get_task_instances(session=session) if t.state == TaskInstanceState.SCHEDULED]:
            _run_task(ti=ti, task=dag.task_dict[ti.task_id], run_triggerer=True)
    raise AssertionError(f"the cleared run did not finish: {dr.state}")


def _data(migration) -> tuple:
    with migration.source_conn() as src, migration.target_conn() as dst:
        result = sample.compare(src, dst, migration.schemas)
        return (result.rows, result.tables, result.lost, result.mismatched, result.extra,
                dst.execute("SELECT count(*) FROM dms_sample.person").fetchone()[0],
                src.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0],
                dst.execute("SELECT count(*) FROM pg_subscription").fetchone()[0])


@pytest.mark.safety
def test_reruns_after_a_completed_cutover_say_already_cut_over_and_change_nothing(local_migration, hitl, capfd):
    migration = local_migration("e2e_rerun", cutover={"approval": "manual"}, rows=500)
    started = datetime.now(UTC).replace(microsecond=0)
    responder = hitl("Approve")
    dagrun = migration.run(responder=responder)
    states = migration.task_states(dagrun)
    assert dagrun.state == "success", states
    assert states["cutover.switch_over"] == "success" and states["database_moved.app"] == "success"

    # The approval page said when its lag was measured (during this run) and what is checked after approval.
    assert responder.answered, responder.errors
    body = responder.answered[0]["body"]
    measured = re.search(r"### Replication lag \(measured (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC\)", body)
    assert measured, body
    assert started <= datetime.strptime(measured[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) <= datetime.now(UTC)
    assert "`check_guardrails` measures again" in body

    events = _asset_events(migration.dag_id)
    assert [(e["uri"], e["task_id"], e["run_id"]) for e in events] == [(ASSET_URI, "database_moved.app",
                                                                        dagrun.run_id)]
    extra = events[0]["extra"]
    assert extra["database"] == "app" and extra["run_id"] == dagrun.run_id and extra["migration_id"] == "e2e_rerun"
    assert extra["target_port"] == migration.target_port and extra["target_host"] == "127.0.0.1"
    assert extra["target_open_at"]

    data = _data(migration)
    assert data[2:5] == (0, 0, 0) and data[6:] == (0, 0), data
    assert not _can_write_as_app(migration), "after the cutover the source stays fenced for the application"
    report_dir = _report_dir(migration.dag_id, dagrun.run_id)
    report = (report_dir / "report.json").read_text()
    assert json.loads(report)["outcome"] == "cut over"
    assert started <= datetime.fromisoformat(extra["target_open_at"])

    # 1. Clear the lag sensor after the cutover, as the issue did in the UI.
    capfd.readouterr()
    cleared = _clear(migration.dag_id, dagrun.run_id, "wait_in_sync.wait_cdc_lag")
    # Airflow clears the sensor's setup and the teardowns with it (the issue's rerun).
    assert {"validate_run", "wait_in_sync.wait_cdc_lag", "cleanup", "report"} <= set(cleared), cleared
    rerun = _run_cleared(migration.dag(), dagrun.run_id)
    states = migration.task_states(rerun)
    assert rerun.state == "success", states
    assert states["wait_in_sync.wait_cdc_lag[0]"] == "skipped", states
    assert states["validate_run"] == states["cleanup"] == states["report"] == "success", states
    assert "already cut over" in capfd.readouterr().out
    assert _data(migration) == data and not _can_write_as_app(migration)
    assert (report_dir / "report.json").read_text() == report
    assert len(_asset_events(migration.dag_id)) == 1

    # 2. Run every task again under the same run id: only validate_run and the teardowns do anything.
    again = migration.dag().test(run_conf={}, logical_date=dagrun.logical_date, run_after=dagrun.run_after)
    states = migration.task_states(again)
    assert again.run_id == dagrun.run_id
    assert again.state == "success", states
    for task_id in GUARDED_SKIPPED_ON_FULL_RERUN:
        assert states.get(task_id, states.get(f"{task_id}[0]")) == "skipped", (task_id, states)
    assert "failed" not in states.values() and "upstream_failed" not in states.values(), states
    output = capfd.readouterr().out
    assert "already cut over: run " + dagrun.run_id in output
    assert _data(migration) == data and not _can_write_as_app(migration)
    assert (report_dir / "report.json").read_text() == report
    assert len(_asset_events(migration.dag_id)) == 1


def test_post_dag_runs_refuses_an_unknown_database_before_a_run_exists(local_migration):
    """The REST API a user or the form calls: Airflow validates the conf against the DAG's Params."""
    migration = local_migration("e2e_refused", rows=50)
    migration.dag().test(run_conf={"dry_run": True})  # registers the DAG in the metadata database
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    def runs() -> int:
        with create_session() as session:
            return session.scalar(select(func.count()).select_from(DagRun).where(DagRun.dag_id == migration.dag_id))

    before = runs()
    reply = _api().post(f"/api/v2/dags/{migration.dag_id}/dagRuns",
                        json={"logical_date": None, "conf": {"databases": ["nope"]}})
    assert reply.status_code == 400, reply.text
    assert "Invalid input for param databases" in reply.text and "nope" in reply.text
    assert runs() == before
    accepted = _api().post(f"/api/v2/dags/{migration.dag_id}/dagRuns",
                           json={"logical_date": None, "conf": {"databases": ["app"], "dry_run": True}})
    assert accepted.status_code == 200, accepted.text
    assert runs() == before + 1
