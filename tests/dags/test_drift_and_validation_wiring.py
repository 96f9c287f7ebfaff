"""The DAGs wire this run's validation and the schema drift check (issue 8, scenarios 7 and 9): the
validation sensor keys its state by the run id, the gate and the guardrail re-check compare the migrated
schemas' catalogs on source and target, and the native lag sensor can name the drift. Built from the
project's YAML files; nothing runs. Stand-ins: none."""

from __future__ import annotations

from pathlib import Path

import pytest

from dag_factory import build_dag
from migration.config import load_config

ROOT = Path(__file__).resolve().parents[2]
YAMLS = sorted((ROOT / "include" / "migrations").glob("*.yaml"))


@pytest.mark.safety
@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_gate_and_recheck_compare_the_schemas_of_source_and_target(path):
    config = load_config(path)
    dag = build_dag(config)
    for task_id in ("cutover.approve_cutover", "cutover.check_guardrails"):
        task = dag.get_task(task_id)
        assert task.target_conn_id == config.target.conn_id, task_id
        assert task.schemas.key == "schemas" and {"target_conn_id", "schemas", "target_host", "target_port"} <= set(
            task.template_fields), task_id
    if config.cdc_engine == "native":
        validation = dag.get_task("wait_in_sync.wait_validation_clean")
        assert validation.run_id == "{{ run_id }}" and "run_id" in validation.template_fields
        lag = dag.get_task("wait_in_sync.wait_cdc_lag")
        # The per-database group's mapped argument, resolved at run time like the validation sensor's.
        assert lag.schemas is not None and "schemas" in lag.template_fields
        assert repr(lag.schemas) == repr(validation.schemas)
