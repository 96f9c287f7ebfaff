"""Every migration YAML builds its DAG; a broken YAML fails alone, with a readable message."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
YAMLS = sorted((ROOT / "include" / "migrations").glob("*.yaml"))


@pytest.fixture(autouse=True, scope="module")
def project_migrations():
    """These tests read the project's own YAML files, whatever another test module pointed at."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MIGRATIONS_DIR", str(ROOT / "include" / "migrations"))
    yield
    mp.undo()


def _dagbag(folder: Path):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(folder))


@pytest.fixture(scope="module")
def project_bag():
    return _dagbag(ROOT / "dags")


def test_every_yaml_has_its_dag_file_and_back():
    dag_files = {p.stem.removeprefix("migrate__") for p in (ROOT / "dags").glob("migrate__*.py")}
    assert dag_files == {p.stem for p in YAMLS}


def test_no_import_errors(project_bag):
    assert project_bag.import_errors == {}


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_each_yaml_builds_a_dag(project_bag, path):
    dag = project_bag.dags[f"migrate__{path.stem}"]
    assert dag.doc_md and "migration" in dag.tags
    assert dag.max_active_runs == 1 and dag.schedule is None
    assert {"databases", "schemas", "cutover_not_before", "dry_run"} <= set(dag.params)
    assert all(t.retries == 0 for t in dag.tasks)


def test_dag_shows_only_its_own_path(project_bag):
    local = {t.task_id for t in project_bag.dags["migrate__local_demo"].tasks}
    assert {"clone_source", "start_cdc.create_subscription", "cutover.switch_over"} <= local
    assert not any("dms" in t or "aurora" in t or "snapshot" in t for t in local)


def test_per_database_work_is_mapped(project_bag):
    dag = project_bag.dags["migrate__local_demo"]
    for task_id in ("prepare_source.create_slot", "start_cdc.create_subscription", "wait_in_sync.wait_cdc_lag",
                    "wait_in_sync.wait_validation_clean", "preflight"):
        from airflow.sdk.definitions.taskgroup import MappedTaskGroup

        task = dag.get_task(task_id)
        assert task.is_mapped or isinstance(task.task_group, MappedTaskGroup), task_id


def test_broken_yaml_fails_alone(tmp_path, monkeypatch):
    dags, migrations = tmp_path / "dags", tmp_path / "migrations"
    dags.mkdir(), migrations.mkdir()
    good = yaml.safe_load((ROOT / "include" / "migrations" / "local_demo.yaml").read_text())
    (migrations / "local_demo.yaml").write_text(yaml.safe_dump(good))
    bad = dict(good, migration_id="broken_one", cdc_engine="kafka")
    (migrations / "broken_one.yaml").write_text(yaml.safe_dump(bad))
    for migration_id in ("local_demo", "broken_one"):
        shutil.copy(ROOT / "dags" / "migrate__local_demo.py", dags / f"migrate__{migration_id}.py")
    monkeypatch.setenv("MIGRATIONS_DIR", str(migrations))
    bag = _dagbag(dags)
    assert set(bag.dags) == {"migrate__local_demo"}
    assert len(bag.import_errors) == 1
    (path, message), = bag.import_errors.items()
    assert path.endswith("migrate__broken_one.py")
    assert "broken_one.yaml: cdc_engine: expected one of dms, native; got 'kafka'" in message


def test_dag_files_do_no_io_beyond_their_yaml(monkeypatch):
    """Parsing must not open connections: with every connection lookup failing, the DAGs still build."""
    import psycopg

    def refuse(*args, **kwargs):
        raise AssertionError("a DAG file opened a database connection at parse time")

    monkeypatch.setattr(psycopg, "connect", refuse)
    monkeypatch.setenv("AIRFLOW_CONN_LOCAL_SOURCE", "postgres://nobody@192.0.2.1:1/x")
    bag = _dagbag(ROOT / "dags")
    assert bag.import_errors == {}


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_dags_survive_serialization(project_bag, path):
    """The scheduler runs the serialized DAG: every task and templated argument must come back intact."""
    from airflow.serialization.serialized_objects import DagSerialization

    dag = project_bag.dags[f"migrate__{path.stem}"]
    restored = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    assert set(restored.task_ids) == set(dag.task_ids)
    for task in dag.tasks:
        copy = restored.get_task(task.task_id)
        assert tuple(copy.template_fields) == tuple(task.template_fields), task.task_id


def test_aws_dags_take_the_target_endpoint_from_the_clone(project_bag):
    dag = project_bag.dags["migrate__aurora_orders"]
    assert {"share_cluster", "create_clone", "wait_clone_available", "target_logical_replication_off",
            "start_cdc.create_cdc_task", "start_cdc.resolve_start_lsn", "cleanup_aws", "delete_replication_instance",
            "preflight_aws"} <= set(dag.task_ids)
    assert "wait_clone_available" in dag.get_task("prepare_target.disable_target_triggers").target_host
    switch = dag.get_task("cutover.switch_over")
    assert (switch.spec.write_block, switch.spec.cdc_engine, switch.spec.dns.zone_id) == (
        "security_group", "dms", "Z0123456789ABCDEFGHIJ")
    rds = project_bag.dags["migrate__rds_billing"]
    assert {"create_snapshot", "copy_snapshot", "restore_instance",
            "start_cdc.create_subscription"} <= set(rds.task_ids)
    assert "start_cdc.create_cdc_task" not in rds.task_ids
