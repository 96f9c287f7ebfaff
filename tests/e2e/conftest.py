"""Whole-DAG runs on real PostgreSQL: a source server with the sample workload, the real DAG built
from a YAML, run by `dag.test()`, and the approval gate answered through Airflow's REST API.

Nothing is stood in: the clone is a real pg_basebackup copy started as a second server, CDC is real
logical replication, and the human's answer goes through the same PATCH .../hitlDetails endpoint
the UI's Required Actions page uses.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql

from migration import sample
from migration.localpg import LocalServer, _write_as_server_user, free_port

ROOT = Path(__file__).resolve().parents[2]


class HitlResponder:
    """Answers the next pending approval through the REST API, as a person in the UI would."""

    def __init__(self, choice: str, timeout: float = 600):
        # Built here, in the main thread: importing the API app from the responder thread while
        # dag.test() configures the ORM deadlocks on Python's import lock.
        from airflow.api_fastapi.app import create_app
        from airflow.models import import_all_models
        from fastapi.testclient import TestClient

        import_all_models()
        self.client = TestClient(create_app())
        self.choice = choice
        self.timeout = timeout
        self.answered: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> HitlResponder:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.done.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            self._answer()
        except Exception as exc:  # noqa: BLE001 - reported through .errors
            self.errors.append(f"{type(exc).__name__}: {exc}")

    def _answer(self) -> None:
        client = self.client
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline and not self.done.is_set():
            reply = client.get("/api/v2/dags/~/dagRuns/~/hitlDetails", params={"response_received": False})
            if reply.status_code != 200:
                self.errors.append(f"GET {reply.status_code}: {reply.text[:200]}")
            for item in reply.json().get("hitl_details", []) if reply.status_code == 200 else []:
                ti = item["task_instance"]
                url = (f"/api/v2/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/"
                       f"{ti['task_id']}/{ti['map_index']}/hitlDetails")
                answer = client.patch(url, json={"chosen_options": [self.choice], "params_input": {}})
                if answer.status_code == 200:
                    self.answered.append({"task_id": ti["task_id"], "body": item.get("body"), **answer.json()})
                    return
                self.errors.append(f"PATCH {answer.status_code}: {answer.text[:200]}")
            time.sleep(1)


@pytest.fixture
def hitl(airflow_db):
    """hitl("Approve") starts a responder that answers the next pending approval through the API."""
    return lambda choice: HitlResponder(choice).start()


def require_password(server: LocalServer, role: str) -> None:
    """pg_hba.conf: ``role`` must authenticate with scram-sha-256 (everyone else stays trusted)."""
    hba = server.datadir / "pg_hba.conf"
    rules = (f"host all {role} 127.0.0.1/32 scram-sha-256\n"
             f"host replication {role} 127.0.0.1/32 scram-sha-256\n")
    _write_as_server_user(hba, rules + hba.read_text(), append=False)
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
    deadline = time.monotonic() + 10
    while True:  # the reload is asynchronous: wait until a login without the password is refused
        try:
            psycopg.connect(server.conninfo(user=role), connect_timeout=5).close()
        except psycopg.OperationalError:
            return
        assert time.monotonic() < deadline, f"{server.datadir}: {role} still logs in without a password"
        time.sleep(0.1)


@dataclass
class LocalMigration:
    """A source server with the sample workload and a migration YAML + DAG file pointing at it."""

    migration_id: str
    source: LocalServer
    target_port: int
    clone_dir: Path
    dags_dir: Path
    database: str = "app"
    schemas: list[str] = field(default_factory=lambda: [sample.SAMPLE_SCHEMA])

    @property
    def dag_id(self) -> str:
        return f"migrate__{self.migration_id}"

    def source_conn(self, user: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.source.conninfo(self.database, user=user), autocommit=True)

    def target_conn(self) -> psycopg.Connection:
        return psycopg.connect(f"host=127.0.0.1 port={self.target_port} dbname={self.database} user=postgres",
                               autocommit=True)

    def dag(self):
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(self.dags_dir / f"{self.dag_id}.py"))
        assert not bag.import_errors, bag.import_errors
        return bag.dags[self.dag_id]

    def run(self, conf: dict[str, Any] | None = None, responder: HitlResponder | None = None):
        """Run the DAG to its end with dag.test(); returns the DagRun."""
        try:
            return self.dag().test(run_conf=conf or {})
        finally:
            if responder is not None:
                responder.stop()

    def task_states(self, dagrun) -> dict[str, str]:
        """Task states, those that did not succeed first (an assertion's message shows the first few)."""
        states = {(ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"): ti.state
                  for ti in dagrun.get_task_instances()}
        return dict(sorted(states.items(), key=lambda item: (item[1] == "success", item[0])))


@pytest.fixture
def local_migration(pg_servers_fn, airflow_db, tmp_path, monkeypatch, request):
    """Builds a LocalMigration; ``request.param``-free: tests call it with overrides for the YAML."""

    def make(migration_id: str, *, cutover: dict[str, Any] | None = None, rows: int = 3000,
             admin_password: str | None = None,
             replication: tuple[str, str] | None = None) -> LocalMigration:
        """``admin_password`` goes into the source connection (the server still trusts its login);
        ``replication`` = (role, password) creates that role with least privilege (REPLICATION, SELECT on
        the sample tables), makes the source require its password, and sets ``source.replication_conn_id``."""
        source = pg_servers_fn.new("source", synchronous_commit="on")
        with psycopg.connect(source.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE app")
        with psycopg.connect(source.conninfo("app"), autocommit=True) as conn:
            sample.create_sample(conn, people=rows, events=50, tickets=rows * 2, mlb=rows, seats=500)
            if admin_password:
                conn.execute(sql.SQL("ALTER ROLE postgres PASSWORD {}").format(admin_password))
            if replication:
                role, password = replication
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN REPLICATION PASSWORD {}").format(
                    sql.Identifier(role), password))
                conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {s} TO {r}; "
                                     "GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r}")
                             .format(s=sql.Identifier(sample.SAMPLE_SCHEMA), r=sql.Identifier(role)))
        if replication:
            require_password(source, replication[0])
        clone_dir = pg_servers_fn.workdir / f"{migration_id}_clone"
        target_port = free_port()
        dags_dir, migrations_dir = airflow_db
        config = yaml.safe_load((ROOT / "include" / "migrations" / "local_demo.yaml").read_text())
        config.update(migration_id=migration_id, source={"conn_id": f"{migration_id}_source"},
                      target={"conn_id": f"{migration_id}_target", "data_directory": str(clone_dir)})
        config["cutover"].update(cutover or {})
        config["validation"]["chunk_rows"] = 1000
        if replication:
            config["source"]["replication_conn_id"] = f"{migration_id}_replication"
        (migrations_dir / f"{migration_id}.yaml").write_text(yaml.safe_dump(config))
        shutil.copy(ROOT / "dags" / "migrate__local_demo.py", dags_dir / f"migrate__{migration_id}.py")
        for side, port in (("source", source.port), ("target", target_port)):
            monkeypatch.setenv(f"AIRFLOW_CONN_{migration_id.upper()}_{side.upper()}", json.dumps(
                {"conn_type": "postgres", "host": "127.0.0.1", "port": port, "login": "postgres", "schema": "app",
                 **({"password": admin_password} if admin_password and side == "source" else {})}))
        if replication:
            monkeypatch.setenv(f"AIRFLOW_CONN_{migration_id.upper()}_REPLICATION", json.dumps(
                {"conn_type": "postgres", "host": "127.0.0.1", "port": source.port, "login": replication[0],
                 "password": replication[1], "schema": "app"}))
        migration = LocalMigration(migration_id, source, target_port, clone_dir, dags_dir)
        # The clone is registered for teardown so a failed test leaves no server running.
        pg_servers_fn.servers.append(LocalServer(datadir=clone_dir, port=target_port, bindir=pg_servers_fn.bindir))
        return migration

    return make
