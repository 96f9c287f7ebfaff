"""A run whose parameters validate_run refuses creates nothing and writes no report (README, "The DAG"):
every other task, teardowns included, is downstream of validate_run, and the teardowns' setup is its
plan, so they do not run when it fails. Built from the project's YAML files; nothing runs. Stand-ins: none."""

from __future__ import annotations

from pathlib import Path

import pytest

from dag_factory import build_dag
from migration.config import load_config

ROOT = Path(__file__).resolve().parents[2]
YAMLS = sorted((ROOT / "include" / "migrations").glob("*.yaml"))


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_every_task_waits_for_validate_run(path):
    dag = build_dag(load_config(path))
    root = dag.get_task("validate_run")
    downstream = root.get_flat_relative_ids(upstream=False)
    assert set(dag.task_dict) - {"validate_run"} == downstream
    assert [t.task_id for t in dag.roots] == ["validate_run"]
    for task_id in ("cleanup", "report"):
        task = dag.get_task(task_id)
        assert task.is_teardown and "validate_run" in task.upstream_task_ids
