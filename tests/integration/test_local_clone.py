"""The local platform's clone: real pg_basebackup copies, reruns, partial copies and the sensor check."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import psycopg
import pytest

from migration.local_clone import MARKER, LocalCloneError, clone_local, clone_logfile
from migration.localpg import SERVER_USER, LocalServer, free_port
from migration.lsn import find_redo_done
from triggers.checks import poll_clone_available

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def source(pg_servers):
    server = pg_servers.new("clonesrc")
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        conn.execute("INSERT INTO t SELECT generate_series(1, 100)")
    return server


def track(pg_servers, result: dict) -> LocalServer:
    """Let the factory stop the clone at teardown."""
    server = LocalServer(datadir=Path(result["datadir"]), port=result["port"], bindir=pg_servers.bindir)
    pg_servers.servers.append(server)
    return server


def rows(server: LocalServer) -> int:
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM t").fetchone()[0]


def test_clone_then_rerun_running_and_stopped(pg_servers, source):
    datadir = pg_servers.workdir / "clone_a"
    first = clone_local(source.conninfo(), datadir, free_port(), pg_servers.bindir)
    clone = track(pg_servers, first)
    assert first["copied"] and first["started"]
    assert (datadir / MARKER).exists()
    assert first["logfile"] == str(clone_logfile(datadir)) == str(clone.logfile)
    assert find_redo_done(clone.log_text()) is not None
    assert rows(clone) == 100

    # Rerun while running: nothing happens.
    again = clone_local(source.conninfo(), datadir, first["port"], pg_servers.bindir)
    assert not again["copied"] and not again["started"] and again["port"] == first["port"]

    # A change made in the clone survives a stop and a rerun, so the rerun did not copy again.
    with psycopg.connect(clone.conninfo(), autocommit=True) as conn:
        conn.execute("INSERT INTO t VALUES (1000)")
    clone.stop()
    restarted = clone_local(source.conninfo(), datadir, first["port"], pg_servers.bindir)
    assert restarted["started"] and not restarted["copied"]
    assert rows(clone) == 101


def test_partial_copy_is_removed_and_copied_again(pg_servers, source):
    datadir = pg_servers.workdir / "clone_b"
    port = free_port()
    # A complete copy whose marker was never written is what a run killed after pg_basebackup leaves.
    LocalServer.basebackup(source.conninfo(), datadir, port, pg_servers.bindir)
    (datadir / "left_over_from_failed_run").write_text("x")
    clone_logfile(datadir).write_text("redo done at 0/1\n")

    result = clone_local(source.conninfo(), datadir, port, pg_servers.bindir)
    clone = track(pg_servers, result)
    assert result["copied"] and result["started"]
    assert not (datadir / "left_over_from_failed_run").exists()
    assert "redo done at 0/1\n" not in clone.log_text()
    assert rows(clone) == 100


def test_refuses_a_directory_that_is_not_a_copy(pg_servers, source):
    datadir = pg_servers.workdir / "precious"
    datadir.mkdir()
    (datadir / "notes.txt").write_text("keep me")
    with pytest.raises(LocalCloneError, match="does not look like a PostgreSQL copy"):
        clone_local(source.conninfo(), datadir, free_port(), pg_servers.bindir)
    assert (datadir / "notes.txt").read_text() == "keep me"
    with pytest.raises(LocalCloneError, match="port"):
        clone_local(source.conninfo(), pg_servers.workdir / "x", 70000, pg_servers.bindir)


def test_check_clone_available(pg_servers, source, monkeypatch):
    datadir = pg_servers.workdir / "clone_c"
    result = clone_local(source.conninfo(), datadir, free_port(), pg_servers.bindir)
    clone = track(pg_servers, result)
    monkeypatch.setenv("AIRFLOW_CONN_LOCAL_TARGET", "postgres://postgres@127.0.0.1:1/postgres")

    done, payload = poll_clone_available(conn_id="local_target", host="127.0.0.1", port=clone.port)
    assert done and payload["accepting"] and payload["in_recovery"] is False

    clone.stop()
    done, payload = poll_clone_available(conn_id="local_target", host="127.0.0.1", port=clone.port)
    assert not done and not payload["accepting"] and payload["reason"]


def test_operator_and_sensor(pg_servers, source, monkeypatch, capfd):
    """The task and the deferrable sensor as the DAG runs them, with connections from the environment."""
    from airflow.sdk.exceptions import TaskDeferred

    from operators.local_clone import LocalCloneOperator
    from sensors.clone_available import CloneAvailableSensor

    monkeypatch.setenv("AIRFLOW_CONN_LOCAL_SOURCE", f"postgres://postgres@127.0.0.1:{source.port}/postgres")
    monkeypatch.setenv("AIRFLOW_CONN_LOCAL_TARGET", "postgres://postgres@127.0.0.1:1/postgres")
    port = free_port()
    operator = LocalCloneOperator(task_id="clone_source", source_conn_id="local_source",
                                  data_directory=str(pg_servers.workdir / "clone_op"), port=str(port),
                                  bindir=str(pg_servers.bindir))
    capfd.readouterr()
    result = operator.execute({})
    logged = "".join(capfd.readouterr())
    clone = track(pg_servers, result)
    assert result["port"] == port and result["copied"]
    # Without source.replication_conn_id the task log says which login copies (README, config reference).
    assert "No replication_conn_id: pg_basebackup connects as the source connection local_source" in logged
    assert operator.execute({})["copied"] is False

    sensor = CloneAvailableSensor(task_id="wait_clone", target_conn_id="local_target", host="127.0.0.1", port=port)
    assert sensor.execute({})["accepting"] is True
    clone.stop()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    classpath, kwargs = deferred.value.trigger.serialize()
    assert classpath == "triggers.poll.PollTrigger"
    assert kwargs["check"] == "triggers.checks:poll_clone_available"
    assert kwargs["kwargs"] == {"conn_id": "local_target", "dbname": None, "host": "127.0.0.1", "port": port}


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the server user differs from the caller only as root")


@root_only
def test_a_parent_folder_owned_by_root_is_fine(pg_servers, source):
    """Airflow running as root makes the parent of data_directory; the clone runs as postgres and still
    gets its data directory and log file, handed over by the task."""
    parent = Path(tempfile.mkdtemp(prefix="clone-parent-"))
    parent.chmod(0o755)
    try:
        assert parent.stat().st_uid == 0
        datadir = parent / "clone"
        result = clone_local(source.conninfo(), datadir, free_port(), pg_servers.bindir)
        clone = track(pg_servers, result)
        assert result["copied"] and result["started"]
        assert rows(clone) == 100
        owner = pwd.getpwnam(SERVER_USER).pw_uid
        assert datadir.stat().st_uid == owner and clone_logfile(datadir).stat().st_uid == owner
        assert parent.stat().st_uid == 0, "the parent folder is left as it was"
        clone.stop()
    finally:
        shutil.rmtree(parent, ignore_errors=True)


@root_only
def test_a_parent_the_server_user_cannot_reach_is_refused_with_the_fix(pg_servers, source):
    private = Path(tempfile.mkdtemp(prefix="clone-private-"))  # mode 0700, owned by root
    try:
        datadir = private / "clones" / "clone"
        (private / "clones").mkdir()
        with pytest.raises(LocalCloneError) as caught:
            clone_local(source.conninfo(), datadir, free_port(), pg_servers.bindir)
        message = str(caught.value)
        assert message.startswith("data_directory:")
        assert f"chmod o+x {private}" in message
        assert not datadir.exists() and not clone_logfile(datadir).exists(), "nothing is created"
    finally:
        shutil.rmtree(private, ignore_errors=True)
