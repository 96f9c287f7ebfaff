"""Airflow's own components, each a separate process, on a throwaway PostgreSQL metadata database, and
a local-platform migration for them to run. Used by tests/live and by scripts/screenshots.py.

Nothing is stood in: `airflow api-server`, `scheduler`, `dag-processor` and `triggerer` run with the
LocalExecutor as a user would run them; the metadata database, the migration's source and the clone
are real PostgreSQL servers (migration.localpg). The only client is Airflow's REST API (v2) with the
bearer token the simple auth manager hands out for its generated admin password.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(p) for p in (ROOT / "plugins", ROOT / "dags") if str(p) not in sys.path]

from migration import sample  # noqa: E402
from migration.localpg import LocalServer, find_bindir, free_port, make_workdir  # noqa: E402

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
PASSWORD_FILE = "simple_auth_manager_passwords.json.generated"


class StackError(RuntimeError):
    """The stack did not come up or a wait ran out; the message names the logs to read."""


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    """Call ``probe`` until it returns something truthy; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise StackError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


@dataclass
class LocalMigration:
    """A source server with the sample schema, a migration YAML for it and the DAG file that reads it."""

    migration_id: str
    source: LocalServer
    target_port: int
    clone_dir: Path
    database: str = "app"
    schemas: list[str] = field(default_factory=lambda: [sample.SAMPLE_SCHEMA])

    @property
    def dag_id(self) -> str:
        return f"migrate__{self.migration_id}"

    def connections(self) -> dict[str, str]:
        """The two Postgres connections as AIRFLOW_CONN_<ID> variables (JSON form)."""
        env = {}
        for side, port in (("source", self.source.port), ("target", self.target_port)):
            env[f"AIRFLOW_CONN_{self.migration_id.upper()}_{side.upper()}"] = json.dumps(
                {"conn_type": "postgres", "host": "127.0.0.1", "port": port, "login": "postgres",
                 "schema": self.database})
        return env

    def source_conn(self, user: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.source.conninfo(self.database, user=user), autocommit=True)

    @property
    def target_conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.target_port} dbname={self.database} user=postgres connect_timeout=10"

    def target_conn(self) -> psycopg.Connection:
        return psycopg.connect(self.target_conninfo, autocommit=True)


def make_local_migration(workdir: Path, bindir: Path, migrations_dir: Path, dags_dir: Path, *,
                         migration_id: str = "live_demo", rows: int = 500,
                         cutover: dict[str, Any] | None = None) -> LocalMigration:
    """Start a source server with ``rows`` sample rows per main table and write
    ``migrations_dir/<id>.yaml`` (include/migrations/local_demo.yaml with this source, a clone under
    ``workdir`` and ``cutover`` merged in) and ``dags_dir/migrate__<id>.py`` (a copy of the shipped DAG file)."""
    source = LocalServer(datadir=workdir / f"{migration_id}_source", port=free_port(), bindir=bindir)
    source.init({"synchronous_commit": "on"}).start()
    try:
        with psycopg.connect(source.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE app")
        with psycopg.connect(source.conninfo("app"), autocommit=True) as conn:
            sample.create_sample(conn, people=rows, events=50, tickets=rows * 2, mlb=rows, seats=200)
    except BaseException:
        source.stop(mode="immediate")
        raise
    clone_dir = workdir / f"{migration_id}_clone"
    config = yaml.safe_load((ROOT / "include" / "migrations" / "local_demo.yaml").read_text())
    config.update(migration_id=migration_id, source={"conn_id": f"{migration_id}_source"},
                  target={"conn_id": f"{migration_id}_target", "data_directory": str(clone_dir)})
    config["cutover"].update(cutover or {})
    config["validation"]["chunk_rows"] = 1000
    (migrations_dir / f"{migration_id}.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy(ROOT / "dags" / "migrate__local_demo.py", dags_dir / f"migrate__{migration_id}.py")
    return LocalMigration(migration_id, source, free_port(), clone_dir)


class AirflowStack:
    """`airflow db migrate`, then the four components, each in its own process group, on free ports."""

    def __init__(self, home: Path, dags_dir: Path, metadata_db: LocalServer, env: dict[str, str] | None = None):
        self.home = home
        self.dags_dir = dags_dir
        self.metadata_db = metadata_db
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.processes: dict[str, subprocess.Popen] = {}
        self.token = ""
        self._client: httpx.Client | None = None
        self.env = self._environment(env or {})

    def _environment(self, extra: dict[str, str]) -> dict[str, str]:
        # Nothing Airflow-related leaks in from the calling process (pytest sets its own AIRFLOW_HOME).
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("AIRFLOW") and k not in ("MIGRATIONS_DIR", "MIGRATION_REPORT_DIR")}
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_dir),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN":
                f"postgresql+psycopg2://postgres@127.0.0.1:{self.metadata_db.port}/airflow",
            # One secret for every component: tokens the api-server signs are checked by the others.
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "MIGRATION_REPORT_DIR": str(self.home / "migration_reports"),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT / "dags")]),
        })
        env.update(extra)
        return env

    def log(self, name: str) -> Path:
        return self.home / f"{name}.log"

    def _airflow(self, name: str, args: list[str]) -> subprocess.Popen:
        out = self.log(name).open("ab")
        return subprocess.Popen([str(Path(sys.executable).parent / "airflow"), *args], env=self.env, cwd=self.home,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)

    def start(self, timeout: float = 240) -> AirflowStack:
        with psycopg.connect(self.metadata_db.conninfo(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE airflow")
        migrate = self._airflow("db-migrate", ["db", "migrate"])
        if migrate.wait(timeout=timeout) != 0:
            raise StackError(f"airflow db migrate failed; see {self.log('db-migrate')}")
        for name in COMPONENTS:
            args = [name, "--port", str(self.port)] if name == "api-server" else [name]
            self.processes[name] = self._airflow(name, args)
        password_file = self.home / PASSWORD_FILE
        self.token = wait_for("the api-server to hand out a token", lambda: self._login(password_file),
                              timeout=timeout)
        self._client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"},
                                    timeout=60)
        return self

    def _login(self, password_file: Path) -> str:
        self.check_alive()
        if not password_file.exists():
            return ""
        try:
            password = json.loads(password_file.read_text())["admin"]
            reply = httpx.post(f"{self.url}/auth/token", json={"username": "admin", "password": password},
                               timeout=10)
        except (httpx.HTTPError, ValueError, KeyError):
            return ""
        return reply.json()["access_token"] if reply.status_code in (200, 201) else ""

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise StackError(f"airflow {name} exited with {proc.returncode}; see {self.log(name)}")

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One REST call with the bearer token, e.g. ``api("GET", "/api/v2/importErrors")``."""
        assert self._client is not None, "start() first"
        return self._client.request(method, path, **kwargs)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        reply = self.api(method, path, **kwargs)
        if reply.status_code >= 300:
            raise StackError(f"{method} {path}: {reply.status_code} {reply.text[:500]}")
        return reply.json()

    # --- DAG runs over the API -------------------------------------------------------------------

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> dict[str, Any]:
        def parsed():
            self.check_alive()
            errors = self.json("GET", "/api/v2/importErrors")["import_errors"]
            if errors:
                raise StackError("import errors: " + "\n".join(f"{e['filename']}: {e['stack_trace']}" for e in errors))
            reply = self.api("GET", f"/api/v2/dags/{dag_id}")
            return reply.json() if reply.status_code == 200 else None
        return wait_for(f"the dag-processor to parse {dag_id} (log: {self.log('dag-processor')})", parsed, timeout)

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> httpx.Response:
        return self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})

    def run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return self.json("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """Task instances of a run by ``task_id`` (``task_id[i]`` for a mapped one)."""
        items = self.json("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                          params={"limit": 1000})["task_instances"]
        return {(ti["task_id"] if ti["map_index"] < 0 else f"{ti['task_id']}[{ti['map_index']}]"): ti
                for ti in items}

    def wait_for_run(self, dag_id: str, run_id: str, states: tuple[str, ...] = ("success", "failed"),
                     timeout: float = 600, on_poll: Callable[[dict[str, dict[str, Any]]], Any] | None = None
                     ) -> dict[str, Any]:
        """Poll until the run reaches one of ``states``; ``on_poll`` sees the task instances each second."""
        def finished():
            self.check_alive()
            if on_poll is not None:
                on_poll(self.task_instances(dag_id, run_id))
            run = self.run(dag_id, run_id)
            return run if run["state"] in states else None
        return wait_for(f"run {run_id} of {dag_id} to reach {states} (logs in {self.home})", finished, timeout)

    def pending_approvals(self) -> list[dict[str, Any]]:
        return self.json("GET", "/api/v2/dags/~/dagRuns/~/hitlDetails",
                         params={"response_received": False})["hitl_details"]

    # --- shutdown --------------------------------------------------------------------------------

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
        for proc in self.processes.values():
            _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.processes.values():
            _signal_group(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def kill_leftovers(self) -> None:
        """SIGKILL every process left that carries this AIRFLOW_HOME: task processes that left their
        component's process group. Call it after the PostgreSQL servers a task started are stopped
        (a server started by a task inherits the variable and deserves a clean stop)."""
        for pid in _pids_with_env("AIRFLOW_HOME", str(self.home)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _pids_with_env(name: str, value: str) -> list[int]:
    needle = f"{name}={value}".encode() + b"\0"
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes() + b"\0" and int(environ.parent.name) != os.getpid():
                found.append(int(environ.parent.name))
        except (OSError, ValueError):
            continue
    return found


@dataclass
class LiveEnvironment:
    """What ``live_airflow`` yields: the running stack, the migration it runs, and their folders."""

    stack: AirflowStack
    migration: LocalMigration
    workdir: Path
    dags_dir: Path


@contextmanager
def live_airflow(base: Path, *, migration_id: str = "live_demo", rows: int = 500,
                 cutover: dict[str, Any] | None = None, extra_dag_files: dict[str, str] | None = None,
                 ) -> Iterator[LiveEnvironment]:
    """A local migration (``cutover`` merged into its YAML) and the stack that runs it, under ``base``.
    ``extra_dag_files`` ({file name: text}) go into the DAG folder too. Every process and server
    started here is stopped on the way out, however it is left."""
    bindir = find_bindir()
    workdir = make_workdir("live-airflow-")  # the server user writes here (the clone lands here too)
    home, dags_dir, migrations_dir = (base / "airflow_home", base / "dags", base / "migrations")
    for folder in (home, dags_dir, migrations_dir):
        folder.mkdir(parents=True, exist_ok=True)
    servers: list[LocalServer] = []
    stack = None
    try:
        metadata_db = LocalServer(datadir=workdir / "airflow_metadata", port=free_port(), bindir=bindir)
        servers.append(metadata_db)
        metadata_db.init({"max_connections": "200", "synchronous_commit": "off"}).start()
        migration = make_local_migration(workdir, bindir, migrations_dir, dags_dir, migration_id=migration_id,
                                         rows=rows, cutover=cutover)
        servers += [migration.source, LocalServer(datadir=migration.clone_dir, port=migration.target_port,
                                                  bindir=bindir)]
        for name, text in (extra_dag_files or {}).items():
            (dags_dir / name).write_text(text)
        stack = AirflowStack(home, dags_dir, metadata_db,
                             env={**migration.connections(), "MIGRATIONS_DIR": str(migrations_dir)})
        stack.start()
        yield LiveEnvironment(stack, migration, workdir, dags_dir)
    finally:
        if stack is not None:
            stack.stop()
        for server in reversed(servers):
            try:
                server.stop(mode="immediate")
            except Exception:  # noqa: BLE001 - every server gets its stop
                pass
        if stack is not None:
            stack.kill_leftovers()
        if not os.environ.get("KEEP_PG"):
            shutil.rmtree(workdir, ignore_errors=True)
