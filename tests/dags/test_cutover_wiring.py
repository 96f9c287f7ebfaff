"""The DAGs wire the cutover as docs/ARCHITECTURE.md says (issue 8, scenarios 5, 6 and 11): the critical
section and its teardown find this run's journal by the Airflow run id, the teardown can reach the target
and undo what follows a stopped CDC, and the critical section is bounded as a whole. Built from the
project's YAML files; nothing runs. Stand-ins: none."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from dag_factory import build_dag
from migration.config import load_config

ROOT = Path(__file__).resolve().parents[2]
YAMLS = sorted((ROOT / "include" / "migrations").glob("*.yaml"))


@pytest.mark.safety
@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_cutover_and_its_teardown_are_keyed_by_run_and_bounded(path):
    config = load_config(path)
    dag = build_dag(config)
    switch = dag.get_task("cutover.switch_over")
    unblock = dag.get_task("cutover.unblock_source_writes")
    for task in (switch, unblock):
        assert task.run_id == "{{ run_id }}" and "run_id" in task.template_fields
        assert task.spec.migration_id == config.migration_id and task.target_conn_id == config.target.conn_id
    # The critical section and its teardown are built from one spec.
    assert switch.spec is unblock.spec
    assert switch.spec.max_write_block_seconds == config.cutover.max_write_block_seconds
    assert switch.execution_timeout == timedelta(seconds=config.cutover.max_write_block_seconds + 600)
    assert unblock.is_teardown and unblock.spec.cdc_engine == config.cdc_engine
    assert unblock.databases.key == "databases" and unblock.schemas.key == "schemas"
    if config.cdc_engine == "dms":
        assert switch.spec.dms.plugin == config.dms.plugin


class _RunWithoutResults:
    """What a task's template sees of a run that stopped before wait_clone_available: no return value."""

    def xcom_pull(self, task_ids: str):
        return None


class _RunWithEndpoint:
    def xcom_pull(self, task_ids: str):
        return {"host": "clone.example.internal", "port": 5432} if task_ids == "wait_clone_available" else None


@pytest.mark.parametrize("path", [p for p in YAMLS if load_config(p).platform == "aws"], ids=lambda p: p.stem)
def test_on_aws_the_teardown_of_a_run_that_never_reached_the_clone_renders_and_says_so(path):
    import jinja2

    unblock = build_dag(load_config(path)).get_task("cutover.unblock_source_writes")
    # Airflow renders templates with StrictUndefined, under which ``None['host']`` fails the task.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    reached = [env.from_string(unblock.target_host).render(ti=_RunWithEndpoint()),
               env.from_string(unblock.target_port).render(ti=_RunWithEndpoint())]
    assert reached == ["clone.example.internal", "5432"]
    unblock.target_host = env.from_string(unblock.target_host).render(ti=_RunWithoutResults())
    unblock.target_port = env.from_string(unblock.target_port).render(ti=_RunWithoutResults())
    # No connection is looked up or opened: the target cannot be reached, and the result says why.
    result = unblock.execute({"params": {}})
    assert result["restored"] == [] and "never read in this run" in result["skipped"]
