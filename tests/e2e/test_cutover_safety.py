"""Whole-DAG acceptance of the cutover's promises (issue 8, scenarios 1 and 2) on the local platform.

Each run has live writers that behave like an application: they reconnect after every error, and
some turn ``default_transaction_read_only`` off on each new session. A run either cuts over with
every acknowledged write on the target, or aborts before the target opens with source writes restored
and a message naming what was still writing. A completed cutover with rows missing is never an outcome.

Nothing is stood in: the source and the clone are real PostgreSQL 15 servers, CDC is real logical
replication, and the DAG is the real one, run by ``dag.test()``.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import sql

from migration import sample
from migration import sql as sqlfiles

pytestmark = [pytest.mark.e2e, pytest.mark.safety]

ROWS = 200  # small tables: the runs are about the cutover, not the copy


class AppWriter(threading.Thread):
    """One application session: inserts a person and updates another in one transaction, keeps the
    ids the source acknowledged with the time it sent and the time it got each commit, and reconnects
    after every error, as a connection pool does. ``lift_read_only`` turns the read-only default off on
    every new session (a client trying to get round a fence)."""

    def __init__(self, conninfo: str, *, name: str, lift_read_only: bool, pause: float = 0.02, backoff: float = 0.05,
                 seed: int = 1):
        super().__init__(name=name, daemon=True)
        self.conninfo = conninfo
        self.app_name = name
        self.lift_read_only = lift_read_only
        self.pause = pause
        self.backoff = backoff
        self.rng = random.Random(seed)
        self.committed: list[tuple[int, datetime, datetime]] = []  # (id, sent at, acknowledged at)
        self.failures: list[datetime] = []
        self.errors: deque[str] = deque(maxlen=5)
        self._halt = threading.Event()

    def run(self) -> None:
        conn: psycopg.Connection | None = None
        while not self._halt.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=2,
                                           application_name=self.app_name)
                    if self.lift_read_only:
                        conn.execute("SET default_transaction_read_only = off")
                sent = datetime.now(UTC)
                with conn.transaction():
                    new_id = conn.execute("INSERT INTO dms_sample.person (full_name) VALUES (%s) RETURNING id",
                                          (self.app_name[:60],)).fetchone()[0]
                    conn.execute("UPDATE dms_sample.person SET last_name = %s WHERE id = %s",
                                 (f"U{self.rng.randint(0, 9999)}", self.rng.randint(1, ROWS)))
                self.committed.append((new_id, sent, datetime.now(UTC)))
            except psycopg.Error as exc:
                self.failures.append(datetime.now(UTC))
                self.errors.append(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(self.backoff)
            time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(30)

    def ids(self) -> list[int]:
        return [row[0] for row in self.committed]


def _conn(port: int, database: str, user: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(f"host=127.0.0.1 port={port} dbname={database} user={user} connect_timeout=10",
                           autocommit=True)


def _set_yaml(migration, **changes) -> None:
    path = Path(os.environ["MIGRATIONS_DIR"]) / f"{migration.migration_id}.yaml"
    config = yaml.safe_load(path.read_text())
    for key, value in changes.items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(value)
        else:
            config[key] = value
    path.write_text(yaml.safe_dump(config))


def _add_database(migration, database: str) -> None:
    """A second database on the source with the sample schema (small) and nothing else."""
    with migration.source_conn() as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    with _conn(migration.source.port, database) as conn, psycopg.ClientCursor(conn) as cur:
        cur.execute(sqlfiles.load("sample_schema"),
                    {"people": ROWS, "events": 50, "tickets": ROWS * 2, "mlb": ROWS, "seats": 500})


def _grant_writes(conn: psycopg.Connection, role: str) -> None:
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {s} TO {r}; "
                         "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {r}; "
                         "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {s} TO {r}")
                 .format(s=sql.Identifier(sample.SAMPLE_SCHEMA), r=sql.Identifier(role)))


def _fence_state(conn: psycopg.Connection) -> dict:
    """Everything a role fence may change: logins, per-database role settings, database ACLs."""
    return {
        "logins": conn.execute("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname !~ '^pg_' "
                               "ORDER BY 1").fetchall(),
        "settings": conn.execute("SELECT r.rolname, coalesce(d.datname, '*'), s.setconfig FROM pg_db_role_setting s "
                                 "JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d "
                                 "ON d.oid = s.setdatabase ORDER BY 1, 2").fetchall(),
        # As granted: a NULL datacl and the explicit default it stands for are the same privileges.
        "privileges": conn.execute(
            "SELECT d.datname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, "
            "pg_get_userbyid(a.grantor), a.privilege_type, a.is_grantable FROM pg_database d, "
            "aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a ORDER BY 1, 2, 3, 4").fetchall(),
    }


def _report(dag_id: str) -> dict:
    reports = sorted(Path(os.environ["MIGRATION_REPORT_DIR"], dag_id).glob("*/report.json"))
    assert reports, f"no report was written for {dag_id}"
    return json.loads(reports[-1].read_text())


def _xcom(dag_id: str, run_id: str, task_id: str, key: str = "return_value"):
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalars(select(XComModel).where(
            XComModel.dag_id == dag_id, XComModel.run_id == run_id, XComModel.task_id == task_id,
            XComModel.key == key)).first()
        value = row.value if row is not None else None
    return json.loads(value) if isinstance(value, str) else value


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _on_target(conn: psycopg.Connection, ids: list[int]) -> set[int]:
    return {r[0] for r in conn.execute("SELECT id FROM dms_sample.person WHERE id = ANY(%s)", (ids,))}


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


def test_group_role_members_writing_in_three_databases_cut_over_with_nothing_lost(local_migration):
    """Scenario 1: the application logs in as app_user, a member of the fenced NOLOGIN group app_grp."""
    databases = ["app", "app2", "app3"]
    migration = local_migration("e2e_group", cutover={"approval": "auto", "application_roles": ["app_grp"]},
                                rows=ROWS)
    for database in databases[1:]:
        _add_database(migration, database)
    with migration.source_conn() as admin:
        admin.execute("CREATE ROLE app_grp NOLOGIN; CREATE ROLE app_user LOGIN IN ROLE app_grp")
    for database in databases:
        with _conn(migration.source.port, database) as conn:
            _grant_writes(conn, "app_grp")
    _set_yaml(migration, databases=databases)

    # In each database: one writer that takes the session defaults, one that lifts read-only on every session.
    writers = [AppWriter(migration.source.conninfo(db, user="app_user"), name=f"app {db} {mode}",
                         lift_read_only=mode == "lifts", seed=i)
               for i, (db, mode) in enumerate((db, mode) for db in databases for mode in ("plain", "lifts"))]
    for writer in writers:
        writer.start()
    try:
        dagrun = migration.run()
    finally:
        for writer in writers:
            writer.stop()
    states = migration.task_states(dagrun)
    assert dagrun.state == "success", states
    assert states["cutover.switch_over"] == "success"
    report = _report(migration.dag_id)
    assert report["outcome"] == "cut over"
    assert report["databases"] == databases
    blocked_at, opened_at = _at(report["writes_blocked_at"]), _at(report["target_open_at"])

    for database in databases:
        with _conn(migration.source.port, database) as src, _conn(migration.target_port, database) as dst:
            result = sample.compare(src, dst, migration.schemas)
            assert result.rows > ROWS and result.tables == 7, database
            assert (result.lost, result.mismatched, result.extra) == (0, 0, 0), (database, result)
            for writer in writers[databases.index(database) * 2:][:2]:
                ids = writer.ids()
                assert len(ids) > 10, writer.name
                missing = sorted(set(ids) - _on_target(dst, ids))
                assert not missing, f"{writer.name}: {len(missing)} acknowledged rows missing on the target"

    for writer in writers:
        # Live into the cutover: acknowledged writes in the last 30 s before the fence, refused ones after it.
        assert writer.committed and writer.committed[-1][2] > blocked_at - timedelta(seconds=30), (
            writer.name, writer.errors)
        assert any(at >= blocked_at for at in writer.failures), (writer.name, "was never refused by the fence")
        # No write reached the source once the target was open (sent before it opened, if acknowledged at all).
        assert all(sent < opened_at for _, sent, _ in writer.committed), writer.name

@pytest.mark.parametrize("reconnect_after", [
    pytest.param(0.0, id="reconnects-at-once"),
    # A connection pool's backoff: the session comes back after the proof has read the slots.
    pytest.param(1.0, id="reconnects-after-1s"),
])
def test_a_session_of_the_migrations_own_login_writing_never_loses_rows(local_migration, reconnect_after):
    """Scenario 2: a session of the migration's own login (the source connection's, here a superuser,
    which no CONNECT revoke stops) writes through the cutover and lifts read-only on every new session,
    as an application using the master user would.

    Exactly one of two outcomes is allowed: the cutover aborts before the target opens, names that
    session, and writes come back exactly (both writers write again); or it completes and, with the
    writers still running afterwards as applications do, source and target are equal row for row.
    """
    migration = local_migration(f"e2e_own_login_{int(reconnect_after * 1000)}",
                                cutover={"approval": "auto", "drain_timeout_seconds": 3}, rows=ROWS)
    with migration.source_conn() as src:
        before = _fence_state(src)
    app = AppWriter(migration.source.conninfo("app", user=sample.APP_ROLE), name="application", lift_read_only=False)
    own = AppWriter(migration.source.conninfo("app", user="postgres"), name="own-login-writer", lift_read_only=True,
                    backoff=reconnect_after, seed=2)
    app.start()
    own.start()
    try:
        dagrun = migration.run()
        states = migration.task_states(dagrun)
        report = _report(migration.dag_id)
        timeline = _xcom(migration.dag_id, dagrun.run_id, "cutover.switch_over") or _xcom(
            migration.dag_id, dagrun.run_id, "cutover.switch_over", key="timeline")
        assert timeline, states
        assert states["cutover.unblock_source_writes"] == "success", states

        if states["cutover.switch_over"] == "success":
            assert dagrun.state == "success" and report["outcome"] == "cut over", states
            opened_at = _at(report["target_open_at"])
            time.sleep(reconnect_after + 1)  # the application does not stop when the DAG run ends
            app.stop()
            own.stop()
            after_open = [i for i, sent, _ in own.committed if sent > opened_at]
            with migration.source_conn() as src, migration.target_conn() as dst:
                for writer in (app, own):
                    ids = writer.ids()
                    missing = sorted(set(ids) - _on_target(dst, ids))
                    assert not missing, (
                        f"cut over, yet {len(missing)} of {len(ids)} rows {writer.name} saw committed are not on "
                        f"the target; {len(after_open)} were written to the source after it opened at {opened_at}")
                result = sample.compare(src, dst, migration.schemas)
                assert (result.lost, result.mismatched, result.extra) == (0, 0, 0), result.details
            return

        # Aborted before the target opened, naming the session that wrote.
        assert states["cutover.switch_over"] == "failed" and dagrun.state == "failed", states
        assert timeline["status"] == "aborted", timeline
        assert timeline["failed_step"] in ("drain_source", "prove_source_quiet"), timeline
        assert timeline["target_open_at"] is None and "open_target" not in timeline["durations"], timeline
        assert report["outcome"] == f"aborted at {timeline['failed_step']}; source writes restored"
        failed = next(s for s in timeline["steps"] if s["step"] == timeline["failed_step"])
        assert "postgres@app (own-login-writer)" in failed["error"], failed["error"]
        if timeline["failed_step"] == "prove_source_quiet":
            assert timeline["source_quiet_proof"]["ok"] is False, timeline
            assert report["source_quiet_proof"]["ok"] is False, report
        # The report says what was still writing.
        reported = next(s for s in report["timeline"] if s["name"] == timeline["failed_step"])
        assert "postgres@app (own-login-writer)" in reported["error"], report["timeline"]
        # Writes are back exactly as they were, CDC runs again, and both writers write again.
        with migration.source_conn() as src:
            assert _fence_state(src) == before
        with migration.target_conn() as dst:
            assert dst.execute("SELECT bool_and(subenabled) FROM pg_subscription").fetchone()[0] is True, (
                "CDC resumes after the abort")
        counts = len(app.committed), len(own.committed)
        _wait_for(lambda: len(app.committed) > counts[0] + 3 and len(own.committed) > counts[1] + 3, 30,
                  f"both writers to write again after the abort (app errors: {list(app.errors)})")
    finally:
        app.stop()
        own.stop()
