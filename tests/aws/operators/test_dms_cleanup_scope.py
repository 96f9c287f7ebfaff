"""DMS on what one run may touch: cleanup deletes only what this run cut over (scenario 16), and the target
endpoint is proven to reach the clone, not the source, before DMS is told to write there (scenario 10).

Stand-ins, and why (AWS only; nothing of the project's code is stood in):
- moto server with the DMS extension of tests/aws/dms_fixtures.py is AWS DMS (its docstring lists the gaps
  it closes; among them, an instance or endpoint still used by a task cannot be deleted, as in DMS).
- ``RunXComs`` stands in for the Airflow task instance's XCom calls (xcom_pull / xcom_push) that the
  cleanup-scope task makes, holding what validate_run and the cutover task returned in the run.
- PostgreSQL is real (throwaway servers from tests/conftest.py) where the endpoint guard connects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from dms_fixtures import dms_moto  # noqa: F401 - fixture

from migration.dms import errors as dms_errors
from migration.dms import requests as dms_requests
from migration.dms import resources as dms_resources
from migration.naming import dms_endpoint_id, dms_instance_id, dms_task_id
from operators.dms import (
    DmsCreateCdcTaskOperator,
    DmsDeleteCdcTaskOperator,
    DmsDeleteReplicationInstanceOperator,
    DmsEnsurePostgresEndpointOperator,
    DmsEnsureReplicationInstanceOperator,
    DmsStartCdcTaskOperator,
)

pytestmark = pytest.mark.aws

ROOT = Path(__file__).resolve().parents[3]
TARGET = "222222222222"
MIGRATION = "aurora_orders"
DATABASES = ["orders", "billing"]


@pytest.fixture
def pg_connections(monkeypatch):
    """Airflow Postgres connections whose hosts are only written into endpoints (never dialled here)."""
    for name in ("SOURCE_PG", "TARGET_PG"):
        monkeypatch.setenv(f"AIRFLOW_CONN_{name}", json.dumps({
            "conn_type": "postgres", "host": f"{name.lower()}.example", "port": 5432, "login": "dms_user",
            "password": "pw", "schema": "postgres"}))


@pytest.fixture
def config(tmp_path):
    """The shipped Aurora + DMS migration, with a second database, its target account on moto."""
    from migration.config import load_config

    data = yaml.safe_load((ROOT / "include" / "migrations" / "aurora_orders.yaml").read_text())
    data["databases"] = DATABASES
    data["target"]["aws_conn_id"] = "aws_target"  # moto's target account
    path = tmp_path / "aurora_orders.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def make_cdc(database: str, instance: dict[str, Any]) -> str:
    """Endpoints and a running CDC task for one database, made by the project's own operators."""
    arns = {}
    for side in ("source", "target"):
        arns[side] = DmsEnsurePostgresEndpointOperator(
            task_id=f"ensure_{side}_endpoint", aws_conn_id="aws_target", migration_id=MIGRATION,
            endpoint_identifier=dms_endpoint_id(MIGRATION, database, side), endpoint_type=side, database=database,
            postgres_conn_id=f"{side}_pg").execute({})["arn"]
    arn = DmsCreateCdcTaskOperator(
        task_id="create_cdc_task", aws_conn_id="aws_target", replication_task_id=dms_task_id(MIGRATION, database),
        source_endpoint_arn=arns["source"], target_endpoint_arn=arns["target"],
        replication_instance_arn=instance["arn"], table_mappings=dms_requests.table_mappings(["sales"]),
        cdc_start_position="0/16B3749",
        replication_task_settings=dms_requests.cdc_task_settings(control_schema="dms_control_schema")).execute({})
    DmsStartCdcTaskOperator(task_id="start_cdc_task", aws_conn_id="aws_target", replication_task_arn=arn,
                            cdc_start_position="0/16B3749").execute({})
    return arn


@pytest.fixture
def two_databases(dms_moto, pg_connections):  # noqa: F811 - fixture
    instance = DmsEnsureReplicationInstanceOperator(
        task_id="ensure_replication_instance", aws_conn_id="aws_target", migration_id=MIGRATION,
        replication_instance_identifier=dms_instance_id(MIGRATION), poll_interval=0.05).execute({})
    return {db: make_cdc(db, instance) for db in DATABASES}


class RunXComs:
    """The XCom calls of one task instance, answered from what earlier tasks of the run returned."""

    def __init__(self, returned: dict[str, Any]):
        self.returned = returned
        self.pushed: dict[str, Any] = {}

    def xcom_pull(self, task_ids: str, key: str = "return_value", **_: Any) -> Any:
        return self.returned.get(task_ids) if key == "return_value" else None

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value


def run_dms_cleanup(config, run_databases: list[str], cutover: dict[str, Any] | None) -> dict[str, Any]:
    """The DAG's DMS cleanup for one run, task by task as the DAG wires it (scope, mapped task deletes,
    endpoints, instance)."""
    from dag_factory import build_dag, per_database_plan

    dag = build_dag(config)
    plan = per_database_plan(config, run_databases, list(config.schemas))
    ti = RunXComs({"validate_run": plan, "cutover.switch_over": cutover})
    scope_task = dag.get_task("dms_cleanup_scope")
    scope_task.plan = plan  # rendered from validate_run's XCom in a run
    task_ids = scope_task.execute({"ti": ti})
    results = {"scope": ti.pushed["scope"], "tasks": []}
    deletes = dag.get_task("delete_cdc_task")
    for task_id in task_ids:
        op = deletes.unmap({"replication_task_id": task_id})
        op.stop_poll_interval = 0.01
        results["tasks"].append(op.execute({}))
    endpoints = dag.get_task("delete_dms_endpoints")
    endpoints.endpoint_identifiers = ti.pushed["endpoint_identifiers"]
    results["endpoints"] = endpoints.execute({})
    instance = dag.get_task("delete_replication_instance")
    instance.poll_interval = 0.05
    results["instance"] = instance.execute({})
    return results


def remaining(dms_moto) -> dict[str, list[str]]:  # noqa: F811
    backend = dms_moto.backend(TARGET)
    return {"tasks": sorted(t.id for t in backend.replication_tasks.values()),
            "endpoints": sorted(e.endpoint_identifier for e in backend.endpoints.values()),
            "instances": sorted(i.id for i in backend.replication_instances.values())}


# -- scenario 16: cleanup deletes only what this run cut over -------------------------------------

@pytest.mark.safety
def test_dag_cleanup_deletes_no_dms_resource_named_by_the_config_alone(config):
    """The DAG's delete tasks take their identifiers from the run (the scope task), never from the list of
    every database in the config."""
    from dag_factory import build_dag

    dag = build_dag(config)
    others = {dms_task_id(MIGRATION, "billing"),
              *(dms_endpoint_id(MIGRATION, "billing", s) for s in ("source", "target"))}
    for task in dag.tasks:
        if "delete" in task.task_id:
            fields = {name: getattr(task, name, None) for name in task.template_fields}
            assert not others & set(json.dumps(fields, default=str).replace('"', " ").split()), task.task_id
    assert dag.get_task("delete_cdc_task").upstream_task_ids == {"dms_cleanup_scope"}
    assert "cutover.switch_over" in dag.get_task("dms_cleanup_scope").upstream_task_ids


@pytest.mark.safety
def test_cleanup_after_a_run_narrowed_to_one_database_keeps_the_others(two_databases, dms_moto, config):  # noqa: F811
    """A run for 'orders' cut over; 'billing' (its run failed, it will resume) keeps its task, its endpoints
    and the instance its task runs on."""
    result = run_dms_cleanup(config, ["orders"], {"status": "completed"})
    assert result["scope"]["databases"] == ["orders"]
    assert [t["identifier"] for t in result["tasks"] if t["deleted"]] == [dms_task_id(MIGRATION, "orders")]
    assert remaining(dms_moto) == {
        "tasks": [dms_task_id(MIGRATION, "billing")],
        "endpoints": sorted(dms_endpoint_id(MIGRATION, "billing", s) for s in ("source", "target")),
        "instances": [dms_instance_id(MIGRATION)]}
    assert result["instance"]["deleted"] is False and "billing" in result["instance"]["reason"]
    assert [t.status for t in dms_moto.backend(TARGET).replication_tasks.values()] == ["running"]

    # billing's own run cuts over later: now everything goes, the instance too.
    result = run_dms_cleanup(config, ["billing"], {"status": "completed"})
    assert remaining(dms_moto) == {"tasks": [], "endpoints": [], "instances": []}
    assert result["instance"]["deleted"] is True


@pytest.mark.safety
def test_cleanup_after_a_cutover_that_did_not_complete_deletes_nothing(two_databases, dms_moto, config):  # noqa: F811
    before = remaining(dms_moto)
    for cutover in (None, {"status": "aborted", "failed_step": "drain"}):
        scope = dms_resources.cleanup_scope([{"database": "orders", "dms_task_id": dms_task_id(MIGRATION, "orders"),
                                    "dms_source_endpoint": "a", "dms_target_endpoint": "b"}], cutover)
        assert scope["replication_task_ids"] == [] and scope["endpoint_identifiers"] == []
        assert "did not complete" in scope["reason"]
    result = run_dms_cleanup(config, DATABASES, {"status": "aborted", "failed_step": "drain"})
    assert result["tasks"] == [] and result["endpoints"] == {"deleted": [], "absent": []}
    assert remaining(dms_moto) == before
    assert dms_moto.calls("DeleteReplicationTask") == dms_moto.calls("DeleteEndpoint") == []


@pytest.mark.safety
def test_instance_still_used_by_another_database_task_is_kept(two_databases, dms_moto):  # noqa: F811
    """The instance is shared by every database of the migration: it goes only when no task runs on it."""
    DmsDeleteCdcTaskOperator(task_id="delete_cdc_task", aws_conn_id="aws_target", stop_poll_interval=0.01,
                             replication_task_id=dms_task_id(MIGRATION, "orders")).execute({})
    result = DmsDeleteReplicationInstanceOperator(
        task_id="delete_replication_instance", aws_conn_id="aws_target", poll_interval=0.05,
        replication_instance_identifier=dms_instance_id(MIGRATION), migration_id=MIGRATION).execute({})
    assert result["deleted"] is False and dms_task_id(MIGRATION, "billing") in result["reason"]
    assert dms_moto.calls("DeleteReplicationInstance") == []
    assert remaining(dms_moto)["instances"] == [dms_instance_id(MIGRATION)]


def test_cleanup_scope_refuses_a_malformed_plan():
    with pytest.raises(dms_errors.DmsInputError, match=r"^plan\[0\]\.dms_task_id: "):
        dms_resources.cleanup_scope([{"database": "orders", "dms_task_id": None}], {"status": "completed"})


# -- scenario 10: the target endpoint reaches the clone, not the source ----------------------------

@pytest.fixture(scope="module")
def servers(pg_servers):
    source = pg_servers.new("src")
    clone = pg_servers.clone(source)
    return source, clone


def pg_url(server) -> str:
    return json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": server.port, "login": "postgres",
                       "password": "pw", "schema": "postgres"})


@pytest.mark.safety
def test_target_endpoint_that_reaches_the_source_is_not_created(dms_moto, servers, monkeypatch):  # noqa: F811
    source, clone = servers
    monkeypatch.setenv("AIRFLOW_CONN_SOURCE_PG", pg_url(source))
    monkeypatch.setenv("AIRFLOW_CONN_TARGET_PG", pg_url(source))

    def target_endpoint(port):
        return DmsEnsurePostgresEndpointOperator(
            task_id="ensure_target_endpoint", aws_conn_id="aws_target", migration_id=MIGRATION,
            endpoint_identifier=dms_endpoint_id(MIGRATION, "postgres", "target"), endpoint_type="target",
            database="postgres", postgres_conn_id="target_pg", host="127.0.0.1", port=str(port),
            source_conn_id="source_pg")

    with pytest.raises(Exception, match="reaches the source server itself") as refused:
        target_endpoint(source.port).execute({})
    assert type(refused.value).__name__ == "TargetIsSourceError"
    assert dms_moto.calls("CreateEndpoint") == []

    # The clone (a physical copy: same system identifier, other server) is accepted.
    with psycopg.connect(source.conninfo()) as s, psycopg.connect(clone.conninfo()) as c:
        ident = "SELECT system_identifier FROM pg_control_system()"
        assert s.execute(ident).fetchone() == c.execute(ident).fetchone()
    assert target_endpoint(clone.port).execute({})["created"] is True
    (request,) = dms_moto.calls("CreateEndpoint")
    assert (request["ServerName"], request["Port"]) == ("127.0.0.1", clone.port)


def test_dag_wires_the_source_into_every_task_that_changes_the_target(config):
    from dag_factory import build_dag

    dag = build_dag(config)
    for task_id in ("drop_copied_slots", "prepare_target.create_target_control_schema",
                    "prepare_target.disable_target_triggers", "start_cdc.ensure_target_endpoint"):
        assert dag.get_task(task_id).source_conn_id == config.source.conn_id, task_id
