"""The pg_dump path's DAG: built from the shipped local_logical.yaml (and an AWS variant of rds_billing.yaml),
nothing runs. It holds no clone, snapshot or copied-slot task; the load creates the slot; CDC starts at each
database's own consistent point. Stand-ins: none."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dag_factory import build_dag
from migration.config import load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = ROOT / "include" / "migrations"
CLONE_TASKS = {"clone_source", "capture_clone_lsn", "drop_copied_slots", "share_cluster", "create_clone",
               "create_snapshot", "copy_snapshot", "restore_instance", "target_logical_replication_off",
               "prepare_source.create_slot"}


def _upstream(dag, task_id: str) -> set[str]:
    return {t.task_id for t in dag.get_task(task_id).get_flat_relatives(upstream=True)}


def test_local_logical_builds_a_dag_without_rds_or_clone_tasks():
    dag = build_dag(load_config(MIGRATIONS / "local_logical.yaml"))
    assert "load:pg_dump" in dag.tags
    classes = {type(t).__name__ for t in dag.tasks}
    assert not [c for c in classes if c.startswith("Rds")], classes
    assert not CLONE_TASKS & set(dag.task_ids)
    assert {"preflight_target", "create_target_roles", "load_database", "initial_load_summary"} <= set(dag.task_ids)
    # Roles before the load, the load after the publication (the slot must come after it), the target
    # prepared (triggers disabled) after the load and before CDC starts.
    assert {"create_target_roles", "prepare_source.create_publication", "proceed"} <= _upstream(dag, "load_database")
    assert {"load_database", "initial_load_summary"} <= _upstream(dag, "prepare_target.disable_target_triggers")
    assert "prepare_target.disable_target_triggers" in _upstream(dag, "start_cdc.create_subscription")
    subscribe = dag.get_task("start_cdc.create_subscription")
    assert subscribe.captured_lsn is None
    assert "task_ids='load_database', map_indexes=ti.map_index" in subscribe.origin_lsn
    assert "consistent_point" in subscribe.origin_lsn
    assert subscribe.passfile_directory is None
    # With the existing target's data directory, the subscription's password goes into a file there.
    data = yaml.safe_load((MIGRATIONS / "local_logical.yaml").read_text())
    data["target"]["data_directory"] = "/srv/pg18/data"
    dag = build_dag(parse_config(data, "local_logical.yaml"))
    assert dag.get_task("start_cdc.create_subscription").passfile_directory == "/srv/pg18/data"


def test_aws_pg_dump_reads_the_existing_targets_endpoint_and_changes_no_parameter_group():
    data = yaml.safe_load((MIGRATIONS / "rds_billing.yaml").read_text())
    data["initial_load"] = "pg_dump"
    dag = build_dag(parse_config(data, "rds_billing.yaml"))
    assert not CLONE_TASKS & set(dag.task_ids)
    wait = dag.get_task("wait_clone_available")
    assert type(wait).__name__ == "RdsDbAvailableSensor"
    assert (wait.db_type, wait.db_identifier) == ("instance", "rds-pgsql-target-01")
    assert "wait_clone_available" in _upstream(dag, "create_target_roles")
    # The existing target's endpoint is read before preflight checks it (a dry run checks the same server).
    assert "wait_clone_available" in _upstream(dag, "preflight_target")
    assert "wait_clone_available" in dag.get_task("preflight_target").partial_kwargs["target_host"]
    assert "proceed" not in _upstream(dag, "wait_clone_available")
    load = dag.get_task("load_database")
    assert "wait_clone_available" in load.partial_kwargs["target_host"]


def test_dms_with_pg_dump_starts_each_task_at_its_slots_consistent_point():
    data = yaml.safe_load((MIGRATIONS / "aurora_orders.yaml").read_text())
    data["initial_load"] = "pg_dump"
    dag = build_dag(parse_config(data, "aurora_orders.yaml"))
    assert not CLONE_TASKS & set(dag.task_ids)
    wait = dag.get_task("wait_clone_available")
    assert (wait.db_type, wait.db_identifier) == ("cluster", "aurora-pgsql-target-01")
    # The slot DMS reads is created by the load, with DMS's plugin.
    assert dag.get_task("load_database").partial_kwargs["plugin"] == "test_decoding"
    resolve = dag.get_task("start_cdc.resolve_start_lsn")
    assert "task_ids='load_database', map_indexes=ti.map_index" in resolve.captured_lsn
    assert resolve.capture_method == "slot_consistent_point"
    assert "load_database" in _upstream(dag, "start_cdc.resolve_start_lsn")
    create = dag.get_task("start_cdc.create_cdc_task")
    assert "resolve_start_lsn" in create.cdc_start_position


@pytest.mark.parametrize("shipped", ["aurora_orders.yaml", "rds_billing.yaml"])
def test_aws_pg_dump_preflight_describes_the_source_by_its_own_kind_and_not_the_existing_target(shipped):
    data = yaml.safe_load((MIGRATIONS / shipped).read_text())
    data["initial_load"] = "pg_dump"
    config = parse_config(data, shipped)
    checks = build_dag(config).get_task("preflight_aws").checks
    kind = "cluster" if config.source.cluster_identifier else "instance"
    assert (checks.db_type, checks.source_identifier) == (
        kind, config.source.cluster_identifier if kind == "cluster" else config.source.instance_identifier)
    # The target exists already (another team's server): no "identifier is free" or clone parameter-group check.
    assert checks.target_identifier is None and checks.target_parameter_group is None


def test_the_loads_jobs_and_dump_directory_come_from_the_yaml():
    from migration.logical_load import default_jobs

    load = build_dag(load_config(MIGRATIONS / "local_logical.yaml")).get_task("load_database")
    assert (load.partial_kwargs["jobs"], load.partial_kwargs["dump_root"]) == (default_jobs(), None)
    # The load's slot waits for open transactions as long as create_slot does on the other paths.
    assert load.partial_kwargs["wait_for_xacts_s"] == load_config(MIGRATIONS / "local_logical.yaml"
                                                                  ).max_transaction_age_seconds
    data = yaml.safe_load((MIGRATIONS / "local_logical.yaml").read_text())
    data["logical_load"] = {"jobs": 7, "dump_directory": "/srv/dumps"}
    load = build_dag(parse_config(data, "local_logical.yaml")).get_task("load_database")
    assert (load.partial_kwargs["jobs"], load.partial_kwargs["dump_root"]) == (7, "/srv/dumps")
