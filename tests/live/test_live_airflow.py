"""The package under a real Airflow: api-server, scheduler, dag-processor and triggerer as separate
processes with the LocalExecutor on a throwaway PostgreSQL metadata database, driven over the REST API
only, as an operator would drive it.

Nothing is stood in. The migration is the local platform (two real PostgreSQL servers: a source with
the sample schema and a live writer, and the pg_basebackup clone the DAG starts) with
`cutover.approval: manual`; the approval goes through PATCH .../hitlDetails like the UI's Required
Actions page. A real SHARE lock on the target holds CDC back for a while, so a wait is sure to defer to
the triggerer. The gate is first failed through the API (as an answer racing the scheduler fails it):
the run fails with both servers unchanged, and clearing the gate with what follows it asks again. A
downstream DAG scheduled on the migration's Asset shows the "database moved" event.
tests/live/airflow_stack.py starts and stops everything (scripts/screenshots.py reuses it).
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from airflow_stack import LiveEnvironment, live_airflow, wait_for

from migration import sample

pytestmark = pytest.mark.live

CONF = {"databases": ["app"], "schemas": ["dms_sample"], "dry_run": False}


DOWNSTREAM_DAG_ID = "after_live_demo_app"
# A downstream DAG a user would write: it runs when the migration has moved database `app`.
DOWNSTREAM_DAG = f'''"""Airflow DAG scheduled on the Asset that migration live_demo emits for database app."""
import pendulum
from airflow.sdk import DAG, Asset, task

with DAG(dag_id="{DOWNSTREAM_DAG_ID}", schedule=[Asset("x-pg-account-migration://live_demo/app")],
         start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False):

    @task
    def moved(triggering_asset_events=None):
        return {{str(getattr(key, "uri", key)): [dict(event.extra or {{}}) for event in events]
                for key, events in (triggering_asset_events or {{}}).items()}}

    moved()
'''


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> LiveEnvironment:
    with live_airflow(tmp_path_factory.mktemp("live"), migration_id="live_demo", cutover={"approval": "manual"},
                      extra_dag_files={f"{DOWNSTREAM_DAG_ID}.py": DOWNSTREAM_DAG}) as env:
        env.stack.wait_for_dag(env.migration.dag_id)
        env.stack.wait_for_dag(DOWNSTREAM_DAG_ID)
        yield env


class StateLog:
    """Every state each task instance was seen in, polled about once a second."""

    def __init__(self):
        self.seen: dict[str, list[str]] = {}

    def __call__(self, tis: dict[str, dict[str, Any]]) -> None:
        for key, ti in tis.items():
            states = self.seen.setdefault(key, [])
            if not states or states[-1] != ti["state"]:
                states.append(ti["state"])

    def ever(self, state: str) -> list[str]:
        return sorted(key for key, states in self.seen.items() if state in states)


class CdcStall:
    """Holds CDC back for a while the way a plain CREATE INDEX on the target would: a SHARE lock on one
    target table (reads go on, the apply worker's writes wait) and one source change to that table. The
    lag sensor (the slot's confirmed position stays put) or the validation sensor (a chunk CDC has not
    applied yet) then defers; releasing the lock lets CDC catch up."""

    TABLE = "dms_sample.person"

    def __init__(self, migration):
        self.migration = migration
        self.lock: psycopg.Connection | None = None
        self.released = False

    def start(self) -> None:
        self.lock = psycopg.connect(self.migration.target_conninfo)
        self.lock.execute(f"LOCK TABLE {self.TABLE} IN SHARE MODE")
        with self.migration.source_conn() as src:
            src.execute(f"UPDATE {self.TABLE} SET last_name = 'changed while CDC waits' "
                        f"WHERE id = (SELECT min(id) FROM {self.TABLE})")

    def release(self) -> None:
        if self.lock is not None and not self.released:
            self.lock.rollback()
            self.lock.close()
            self.released = True


def _report(live: LiveEnvironment) -> dict[str, Any]:
    reports = sorted((live.stack.home / "migration_reports" / live.migration.dag_id).glob("*/report.json"))
    assert reports, f"no report under {live.stack.home / 'migration_reports'}"
    return json.loads(reports[-1].read_text())


def test_manual_migration_through_the_rest_api(live):
    stack, migration = live.stack, live.migration
    dag_id = migration.dag_id
    errors = stack.json("GET", "/api/v2/importErrors")
    assert errors["total_entries"] == 0, errors["import_errors"]
    for dag in (dag_id, DOWNSTREAM_DAG_ID):
        assert stack.json("PATCH", f"/api/v2/dags/{dag}", json={"is_paused": False})["is_paused"] is False

    writer = sample.Writer(migration.source.conninfo(migration.database, user=sample.APP_ROLE), pause=0.05)
    stall = CdcStall(migration)
    log = StateLog()
    writing: list[sample.Writer] = []
    try:
        reply = stack.trigger(dag_id, CONF)
        assert reply.status_code == 200, reply.text
        run_id = reply.json()["dag_run_id"]
        assert reply.json()["conf"] == CONF

        def at_the_gate():
            stack.check_alive()
            tis = stack.task_instances(dag_id, run_id)
            log(tis)
            assert stack.run(dag_id, run_id)["state"] in ("queued", "running"), log.seen
            if stall.lock is None and tis.get("wait_clone_available", {}).get("state") == "success":
                stall.start()
            if stall.lock is not None and any(k.startswith("wait_in_sync.") for k in log.ever("deferred")):
                stall.release()
                if not writing:
                    writing.append(writer.start())  # writes through the gate and the cutover
            return tis.get("cutover.approve_cutover", {}).get("state") == "awaiting_input"

        wait_for(f"the gate of {run_id}", at_the_gate, timeout=600)

        # Answer as a person would, after the scheduler has taken the worker's report of the paused gate: an
        # answer inside that gap re-queues the task first, and Airflow 3.3's scheduler then fails it ("finished
        # with state success, but the task instance's state attribute is queued").
        def scheduler_saw_the_pause(times: int = 1) -> bool:
            text = stack.log("scheduler").read_text(errors="replace")
            return sum(1 for line in text.splitlines() if "TaskInstance Finished" in line and run_id in line
                       and "task_id=cutover.approve_cutover" in line and "state=awaiting_input" in line) >= times

        wait_for("the scheduler to see the gate paused", scheduler_saw_the_pause, timeout=120, interval=0.5)

        # A gate that fails (as an answer inside that gap makes it) changes neither server: the run fails, its
        # teardowns keep the slots, and clearing the gate with what follows it asks again (the README says so).
        first_try = stack.task_instances(dag_id, run_id)["cutover.approve_cutover"]["try_number"]
        stack.json("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/cutover.approve_cutover",
                   json={"new_state": "failed"})
        assert stack.wait_for_run(dag_id, run_id, timeout=300, on_poll=log)["state"] == "failed"
        with migration.source_conn() as src:
            assert src.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] >= 1
        stack.json("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances",
                   json={"dry_run": False, "dag_run_id": run_id, "task_ids": ["cutover.approve_cutover"],
                         "include_downstream": True, "only_failed": False, "reset_dag_runs": True})

        def asked_again() -> bool:
            gate_ti = stack.task_instances(dag_id, run_id)["cutover.approve_cutover"]
            return gate_ti["state"] == "awaiting_input" and gate_ti["try_number"] > first_try

        wait_for("the cleared gate to ask again", asked_again, timeout=300)
        wait_for("the scheduler to see the gate paused again", lambda: scheduler_saw_the_pause(2), timeout=120,
                 interval=0.5)
        # A sensor waited in the triggerer, holding no worker slot, while CDC was held back.
        assert [k for k in log.ever("deferred") if k.startswith("wait_in_sync.")], log.seen
        assert stall.released, "the stall ends once a sensor is deferred"

        pending = [item for item in stack.pending_approvals() if item["task_instance"]["dag_run_id"] == run_id]
        assert [item["task_instance"]["task_id"] for item in pending] == ["cutover.approve_cutover"]
        gate = pending[0]
        assert gate["options"] == ["Approve", "Reject"]
        assert "Replication lag" in gate["body"] and "Planned steps" in gate["body"], gate["body"]
        ti = gate["task_instance"]
        answer = stack.json("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/"
                                     f"{ti['map_index']}/hitlDetails",
                            json={"chosen_options": ["Approve"], "params_input": {}})
        assert answer["chosen_options"] == ["Approve"] and answer["responded_by"]["name"] == "admin"
        assert not [item for item in stack.pending_approvals() if item["task_instance"]["dag_run_id"] == run_id]

        run = stack.wait_for_run(dag_id, run_id, timeout=600, on_poll=log)
    finally:
        writer.stop()
        stall.release()
    tis = stack.task_instances(dag_id, run_id)
    not_success = {key: ti["state"] for key, ti in tis.items() if ti["state"] != "success"}
    assert run["state"] == "success" and not not_success, (run["state"], not_success, stack.home)
    assert writer.committed > 20, "the writer must have been busy during the migration"

    with migration.source_conn() as src, migration.target_conn() as dst:
        result = sample.compare(src, dst, migration.schemas)
        assert result.tables == 7 and result.rows > 1000
        assert (result.lost, result.mismatched, result.extra) == (0, 0, 0), result.details
        assert sample.sequence_positions(src, migration.schemas) == sample.sequence_positions(dst, migration.schemas)
    assert _report(live)["outcome"] == "cut over"

    # The completed cutover emitted the database's Asset event, and the DAG scheduled on it ran.
    downstream = wait_for("the downstream DAG's run", lambda: _finished_runs(stack, DOWNSTREAM_DAG_ID), timeout=180)
    assert [(r["run_type"], r["state"]) for r in downstream] == [("asset_triggered", "success")], downstream
    events = stack.json("GET", "/api/v2/assets/events", params={"source_dag_id": dag_id})["asset_events"]
    assert [(e["uri"], e["source_run_id"]) for e in events] == [("x-pg-account-migration://live_demo/app", run_id)]
    extras = stack.json("GET", f"/api/v2/dags/{DOWNSTREAM_DAG_ID}/dagRuns/{downstream[0]['dag_run_id']}/"
                               "taskInstances/moved/xcomEntries/return_value")["value"]
    assert list(extras) == ["x-pg-account-migration://live_demo/app"], extras

    # Clearing one task reruns it, and the run ends in success again.
    report_try = tis["report"]["try_number"]
    cleared = stack.json("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances",
                         json={"dry_run": False, "dag_run_id": run_id, "task_ids": ["report"], "only_failed": False})
    assert "report" in [item["task_id"] for item in cleared["task_instances"]]
    rerun = wait_for("report to rerun", lambda: _rerun_done(stack, dag_id, run_id, report_try), timeout=300)
    assert rerun["state"] == "success" and rerun["try_number"] == report_try + 1, rerun
    assert stack.wait_for_run(dag_id, run_id, timeout=120)["state"] == "success"
    assert _report(live)["outcome"] == "cut over"
    # The rerun emitted no second event.
    assert len(stack.json("GET", "/api/v2/assets/events", params={"source_dag_id": dag_id})["asset_events"]) == 1


def _finished_runs(stack, dag_id: str) -> list[dict[str, Any]]:
    runs = stack.json("GET", f"/api/v2/dags/{dag_id}/dagRuns")["dag_runs"]
    return runs if runs and all(r["state"] in ("success", "failed") for r in runs) else []


def _rerun_done(stack, dag_id: str, run_id: str, before: int) -> dict[str, Any] | None:
    stack.check_alive()
    ti = stack.task_instances(dag_id, run_id)["report"]
    return ti if ti["try_number"] > before and ti["state"] in ("success", "failed") else None


def test_a_run_with_an_unknown_database_is_refused_before_it_exists(live):
    """The trigger form's Param schema lists the YAML's databases (items.enum): the API answers 400 and
    creates no run."""
    stack, dag_id = live.stack, live.migration.dag_id
    runs_before = stack.json("GET", f"/api/v2/dags/{dag_id}/dagRuns")["total_entries"]
    reply = stack.trigger(dag_id, {"databases": ["nope"]})
    assert reply.status_code == 400, reply.text
    assert "nope" in reply.text, reply.text
    assert stack.json("GET", f"/api/v2/dags/{dag_id}/dagRuns")["total_entries"] == runs_before
