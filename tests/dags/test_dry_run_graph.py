"""A dry run stops at `proceed`: every task before it only reads, and every task that changes the
source runs after it. Built from the project's YAML files (with set_logical_replication switched on
for the AWS ones); nothing runs. Stand-ins: none."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dag_factory import build_dag
from migration.config import parse_config

ROOT = Path(__file__).resolve().parents[2]
YAMLS = sorted((ROOT / "include" / "migrations").glob("*.yaml"))
# The only tasks a dry run runs before `proceed` stops it (teardowns aside): they read, they change nothing
# (`preflight_target`: the existing target of a pg_dump load).
READ_ONLY_BEFORE_PROCEED = {"validate_run", "preflight", "preflight_aws", "preflight_target"}


def _dag(path: Path):
    data = yaml.safe_load(path.read_text())
    data["allow_replica_identity_full"] = True
    if data["platform"] == "aws":
        data["set_logical_replication"] = True
    return build_dag(parse_config(data, str(path)))


@pytest.mark.safety
@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_only_read_only_checks_run_before_proceed(path):
    dag = _dag(path)
    proceed = dag.get_task("proceed")
    before = {t.task_id for t in proceed.get_flat_relatives(upstream=True)}
    assert before == READ_ONLY_BEFORE_PROCEED & set(dag.task_ids)
    changes = {"apply_source_changes"} | ({"source_logical_replication_on"} if "platform:aws" in dag.tags else set())
    assert changes <= set(dag.task_ids)
    for task_id in changes:
        upstream = {t.task_id for t in dag.get_task(task_id).get_flat_relatives(upstream=True)}
        assert "proceed" in upstream, task_id
    # The slots and publications come after the source changes (REPLICA IDENTITY before anything is decoded).
    # (initial_load pg_dump: the load creates the slot, with its exported snapshot.)
    slot_task = "load_database" if "load:pg_dump" in dag.tags else "prepare_source.create_slot"
    slot_upstream = {t.task_id for t in dag.get_task(slot_task).get_flat_relatives(upstream=True)}
    assert changes <= slot_upstream
    assert dag.get_task("apply_source_changes").partial_kwargs["allow_replica_identity_full"] is True
    assert dag.get_task("cleanup").control_schema == parse_config(yaml.safe_load(path.read_text())).control_schema
