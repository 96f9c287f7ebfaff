"""Shared fixtures: sys.path as Airflow sets it, and throwaway PostgreSQL 15 servers.

PostgreSQL is always real here: servers are made with initdb/pg_ctl on free ports and cloned with
pg_basebackup. Nothing of the project's own code or of PostgreSQL is mocked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# plugins/ and dags/ as Airflow puts them; then each tier's support modules (cutover_helpers, dms_fixtures,
# airflow_stack), which the tests in the tier's layer folders (operators/, sensors/, triggers/) import too.
for folder in (ROOT / "plugins", ROOT / "dags", *(ROOT / "tests" / tier for tier in ("integration", "aws", "live"))):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

# Airflow reads its configuration when first imported: give the test session its own home.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airflow-tests-")
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
# The DAG folder that dag.test() syncs is read once per session: whole-DAG tests put their DAG files
# here; tests of the project's own DAGs read dags/ explicitly.
SESSION_DAGS = Path(tempfile.mkdtemp(prefix="airflow-test-dags-"))
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(SESSION_DAGS)
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["MIGRATION_REPORT_DIR"] = str(Path(os.environ["AIRFLOW_HOME"]) / "migration_reports")

from migration.localpg import LocalServer, find_bindir, free_port, make_workdir  # noqa: E402


@pytest.fixture(scope="session")
def pg_bindir() -> Path:
    return find_bindir()


class ServerFactory:
    """Makes servers (new or cloned) and stops and removes all of them at teardown."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.workdir = make_workdir()
        self.servers: list[LocalServer] = []
        self._count = 0

    def _next_datadir(self, name: str) -> Path:
        self._count += 1
        return self.workdir / f"{name}{self._count}"

    def new(self, name: str = "pg", **settings: str) -> LocalServer:
        server = LocalServer(datadir=self._next_datadir(name), port=free_port(), bindir=self.bindir)
        self.servers.append(server)
        return server.init(settings).start()

    def clone(self, source: LocalServer, name: str = "clone", start: bool = True) -> LocalServer:
        server = LocalServer.basebackup(
            source.conninfo(), self._next_datadir(name), free_port(), self.bindir
        )
        self.servers.append(server)
        return server.start() if start else server

    def close(self) -> None:
        for server in reversed(self.servers):
            try:
                server.stop(mode="immediate")
            except Exception:  # noqa: BLE001 - teardown must go on
                pass
        if not os.environ.get("KEEP_PG"):
            shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_servers(pg_bindir):
    """Factory for real PostgreSQL servers shared by one test module."""
    factory = ServerFactory(pg_bindir)
    yield factory
    factory.close()


@pytest.fixture
def pg_servers_fn(pg_bindir):
    """Factory for real PostgreSQL servers owned by one test."""
    factory = ServerFactory(pg_bindir)
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def airflow_db(tmp_path_factory):
    """A migrated metadata database (sqlite) in the session's AIRFLOW_HOME, and one DAG folder and one
    migrations folder for every whole-DAG test of the session (Airflow reads its bundle folder once)."""
    dags_dir = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    migrations_dir = tmp_path_factory.mktemp("migrations")
    os.environ["MIGRATIONS_DIR"] = str(migrations_dir)
    os.environ.setdefault("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, capture_output=True, env=dict(os.environ))
    return dags_dir, migrations_dir
