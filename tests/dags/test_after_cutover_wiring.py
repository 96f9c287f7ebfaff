"""How the DAG wires what happens after a completed cutover: the "already cut over" check on the tasks that
lead up to it, and one Asset outlet per database. Built from the project's YAML files; nothing runs and
nothing is stood in. The whole-DAG behaviour is in tests/e2e/test_rerun_after_cutover.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk import Asset
from airflow.serialization.serialized_objects import DagSerialization

from dag_factory import build_dag
from dag_phases.cleanup import moved_task_ids
from migration.config import load_config
from migration.cutover_state import moved_asset_uri
from operators.after_cutover import AlreadyCutOverCheck, DatabaseMovedOperator

ROOT = Path(__file__).resolve().parents[2]
YAMLS = sorted((ROOT / "include" / "migrations").glob("*.yaml"))
SWITCH_OVER = "cutover.switch_over"


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_one_asset_outlet_per_database_after_the_cutover(path):
    config = load_config(path)
    dag = build_dag(config)
    with_outlets = {task.task_id: [a.uri for a in task.outlets] for task in dag.tasks if task.outlets}
    assert with_outlets == {f"database_moved.{db}": [f"x-pg-account-migration://{config.migration_id}/{db}"]
                            for db in config.databases}
    for task_id in with_outlets:
        task = dag.get_task(task_id)
        assert isinstance(task, DatabaseMovedOperator)
        assert task.upstream_task_ids >= {SWITCH_OVER}, task.upstream_task_ids
        assert not task.is_teardown
    # The scheduler's copy keeps them (the DAG processor registers the assets from it).
    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    assert {t: [a.uri for a in scheduler_dag.get_task(t).outlets] for t in with_outlets} == with_outlets


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_the_tasks_up_to_the_cutover_carry_the_check_and_the_rest_do_not(path):
    dag = build_dag(load_config(path))
    check = dag.default_args["pre_execute"]
    assert isinstance(check, AlreadyCutOverCheck)
    switch = dag.get_task(SWITCH_OVER)
    assert check.guarded == (switch.get_flat_relative_ids(upstream=True) | {SWITCH_OVER}) - {"validate_run"}
    for task_id in ("preflight", "proceed", "wait_in_sync.wait_cdc_lag", "cutover.approve_cutover", SWITCH_OVER):
        assert task_id in check.guarded
    after = {"validate_run", "cleanup", "report", "cutover.unblock_source_writes",
             *(t for t in dag.task_dict if t.startswith("database_moved."))}
    assert not after & check.guarded
    # Every task, mapped ones included, runs the check before it executes.
    for task in dag.tasks:
        hook = task.partial_kwargs.get("pre_execute") if hasattr(task, "partial_kwargs") else task._pre_execute_hook
        assert hook is check, task.task_id


def test_asset_uris_are_accepted_by_airflow_as_written():
    assert Asset(moved_asset_uri("local_demo", "app")).uri == "x-pg-account-migration://local_demo/app"
    assert moved_asset_uri("m", "Seat Map/ü") == "x-pg-account-migration://m/Seat%20Map%2F%C3%BC"
    assert Asset(moved_asset_uri("m", "Seat Map/ü")).uri.isascii()


def test_moved_task_ids_are_valid_and_distinct():
    ids = moved_task_ids(["app", "Seat Map", "Seat.Map", "billing-2"])
    assert ids == {"app": "app", "Seat Map": "Seat_Map", "Seat.Map": "Seat_Map_2", "billing-2": "billing-2"}


def test_a_database_the_run_leaves_out_gets_no_event():
    from airflow.sdk.exceptions import AirflowSkipException

    task = DatabaseMovedOperator(task_id="moved", migration_id="m", database="app", run_databases=["crm"],
                                 target_conn_id="t", control_schema="migration_control", on_aws=False)
    with pytest.raises(AirflowSkipException, match="'app' is not among this run's databases"):
        task.execute({"run_id": "manual__1"})


class _TaskInstanceStandIn:
    """Airflow's task instance, as far as a template reads it: ``xcom_pull`` answers what a run holds."""

    def __init__(self, endpoint):
        self.endpoint = endpoint

    def xcom_pull(self, task_ids=None, **_):
        return self.endpoint if task_ids == "wait_clone_available" else None


@pytest.mark.parametrize("path", [p for p in YAMLS if load_config(p).platform == "aws"], ids=lambda p: p.stem)
def test_the_report_renders_on_aws_when_the_run_stopped_before_the_clone(path):
    """A run that failed before `wait_clone_available` (e.g. in preflight_aws) still writes its report:
    the report's endpoint renders to "None" (no chart) instead of failing the teardown."""
    dag = build_dag(load_config(path))
    report = dag.get_task("report")
    env = dag.get_template_env()
    for endpoint, expected in ((None, ("None", "None")), ({"host": "clone.example", "port": 5432},
                                                          ("clone.example", "5432"))):
        context = {"ti": _TaskInstanceStandIn(endpoint)}
        rendered = tuple(report.render_template(getattr(report, f), context, env) for f in ("target_host",
                                                                                            "target_port"))
        assert rendered == expected
