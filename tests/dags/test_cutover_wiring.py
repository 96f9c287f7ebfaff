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
