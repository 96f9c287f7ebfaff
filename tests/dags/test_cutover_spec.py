"""The cutover's critical section and teardown get one typed spec from the DAG factory: the DAGs still
serialize, the run's values are still rendered by Jinja (the journal is keyed by ``{{ run_id }}``), and
the spec says what the YAML says. Built from the project's YAML files; nothing runs. Stand-ins: none.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from dag_factory import build_dag
from migration.config import load_config
from migration.cutover_spec import CutoverSpec, DmsCdc, DnsSwitch, SecurityGroupFence

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "include" / "migrations"
YAMLS = sorted(MIGRATIONS.glob("*.yaml"))


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_the_dag_serializes_with_the_spec(path):
    from airflow.serialization.serialized_objects import DagSerialization

    dag = build_dag(load_config(path))
    restored = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    for task_id in ("cutover.switch_over", "cutover.unblock_source_writes"):
        task, copy_ = dag.get_task(task_id), restored.get_task(task_id)
        assert isinstance(task.spec, CutoverSpec)
        assert tuple(copy_.template_fields) == tuple(task.template_fields)
        assert "spec" not in task.template_fields and "run_id" in task.template_fields


def test_run_values_are_rendered_and_the_spec_is_left_as_built():
    config = load_config(MIGRATIONS / "local_demo.yaml")
    switch = copy.deepcopy(build_dag(config).get_task("cutover.switch_over"))
    # The plan's XCom needs a task instance; the run's databases and schemas are given as rendered.
    switch.databases, switch.schemas = ["app"], ["dms_sample"]
    spec = switch.spec
    context = {"run_id": "manual__2026-12-02T00:00:00+00:00",
               "conn": {config.source.conn_id: SimpleNamespace(login="migrator")}}
    switch.render_template_fields(context)
    assert switch.run_id == "manual__2026-12-02T00:00:00+00:00"
    assert switch.replication_role == "migrator"
    assert switch.spec is spec and switch.databases == ["app"]


def test_the_spec_says_what_the_yaml_says():
    aurora = build_dag(load_config(MIGRATIONS / "aurora_orders.yaml")).get_task("cutover.switch_over").spec
    assert aurora.security_groups == SecurityGroupFence(
        aws_conn_id="aws_platform", security_group_ids=("sg-0a1b2c3d4e5f60001",),
        keep_security_group_ids=("sg-0f9e8d7c6b5a40003",), keep_cidrs=("10.20.0.0/24",))
    assert aurora.dms == DmsCdc(aws_conn_id="aws_payments", plugin="test_decoding")
    assert aurora.dns == DnsSwitch(aws_conn_id="aws_payments", zone_id="Z0123456789ABCDEFGHIJ",
                                   record_name="orders-db.internal.example.com", ttl=30)
    assert (aurora.write_block, aurora.cdc_engine, aurora.control_schema) == (
        "security_group", "dms", "dms_control_schema")
    local = build_dag(load_config(MIGRATIONS / "local_demo.yaml")).get_task("cutover.switch_over").spec
    assert (local.write_block, local.cdc_engine, local.dns) == ("roles", "native", None)
    assert local.application_roles == ("app_writer",) and local.drain_timeout_seconds == 60


def test_the_spec_is_immutable_and_refuses_a_missing_migration_id():
    spec = CutoverSpec(migration_id="m", application_roles=["a", ""])
    assert spec.application_roles == ("a",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.max_write_block_seconds = 5
    with pytest.raises(ValueError, match="^migration_id: "):
        CutoverSpec(migration_id="")
