"""The cutover's critical section on real servers: the role fence, its exact undo, and the abort path.

An application writer keeps writing (and turns default_transaction_read_only off on every new
session) while the source is fenced; the tests check it cannot write, that every write it saw
acknowledged reaches the target, and that after an abort it can write again. Sequence sync and
trigger enabling are the project's own migration.sequences and migration.target_prep functions.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from migration.cutover import (
    CutoverAborted,
    CutoverError,
    LocalTargetOpener,
    NativeCdc,
    NativeLink,
    RoleFence,
    SourceDrain,
    run_cutover,
    unblock_writes,
)
from migration.lsn import find_redo_done
from migration.native_cdc import advance_origin, create_publication, create_subscription, subscription_state
from migration.sequences import read_sequences, sync_sequences
from migration.target_prep import disable_user_triggers, enable_triggers

pytestmark = pytest.mark.integration

CONTROL = "migration_control"
DATABASES = ["appdb", "Other DB"]

SETUP_CLUSTER = [
    "CREATE ROLE app_group NOLOGIN",
    "CREATE ROLE app_rw LOGIN IN ROLE app_group",
    'CREATE ROLE "App Reader" LOGIN',
    "CREATE ROLE repl LOGIN REPLICATION",
    "CREATE ROLE monitor LOGIN",
    "CREATE ROLE legacy NOLOGIN",
    # Settings the fence must leave as they were: another setting, and read-only explicitly off.
    "ALTER ROLE app_rw SET statement_timeout = '5s'",
    'ALTER ROLE "App Reader" SET default_transaction_read_only = off',
    'ALTER ROLE "App Reader" IN DATABASE postgres SET work_mem = \'8MB\'',
    "CREATE DATABASE appdb",
    'CREATE DATABASE "Other DB"',
    "GRANT CONNECT ON DATABASE appdb TO app_group WITH GRANT OPTION",
    'GRANT CONNECT ON DATABASE appdb TO "App Reader"',
]
SETUP_APPDB = [
    "CREATE SCHEMA app",
    "CREATE TABLE app.items (id serial PRIMARY KEY, v text NOT NULL)",
    "CREATE TABLE app.audit (item_id int PRIMARY KEY)",
    """CREATE FUNCTION app.audit_item() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN INSERT INTO app.audit VALUES (NEW.id); RETURN NEW; END $$""",
    "CREATE TRIGGER audit_item AFTER INSERT ON app.items FOR EACH ROW EXECUTE FUNCTION app.audit_item()",
    "GRANT USAGE ON SCHEMA app TO app_group",
    "GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA app TO app_group",
    "GRANT USAGE ON ALL SEQUENCES IN SCHEMA app TO app_group",
]


def connect(server, dbname: str = "postgres", user: str = "postgres", **kwargs) -> psycopg.Connection:
    conninfo = psycopg.conninfo.make_conninfo(server.conninfo(), dbname=dbname, user=user)
    return psycopg.connect(conninfo, autocommit=True, **kwargs)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
    return value


def security_snapshot(conn: psycopg.Connection) -> dict:
    """Everything the fence may touch: logins, role settings, and database privileges as granted."""
    return {
        "logins": conn.execute("SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY 1").fetchall(),
        "settings": conn.execute(
            "SELECT r.rolname, coalesce(d.datname, '*'), s.setconfig FROM pg_db_role_setting s "
            "JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase ORDER BY 1, 2").fetchall(),
        "privileges": conn.execute(
            "SELECT d.datname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, "
            "pg_get_userbyid(a.grantor), a.privilege_type, a.is_grantable "
            "FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a ORDER BY 1, 2, 3, 4").fetchall(),
    }


class AppWriter(threading.Thread):
    """An application session that keeps inserting and reconnects, lifting read-only on every session."""

    def __init__(self, conninfo: str):
        super().__init__(daemon=True)
        self.conninfo = conninfo
        self.stop_event = threading.Event()
        self.written: list[int] = []
        self.failures = 0

    def run(self) -> None:
        conn = None
        while not self.stop_event.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=2)
                    conn.execute("SET default_transaction_read_only = off")
                self.written.append(conn.execute("INSERT INTO app.items (v) VALUES ('w') RETURNING id").fetchone()[0])
                time.sleep(0.003)
            except psycopg.Error:
                self.failures += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.02)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(30)


@pytest.fixture(scope="module")
def source(pg_servers):
    server = pg_servers.new("cutsrc")
    with connect(server) as conn:
        for statement in SETUP_CLUSTER:
            conn.execute(statement)
    with connect(server, "appdb") as conn:
        for statement in SETUP_APPDB:
            conn.execute(statement)
    return server


def role_fence(conn, fence_id: str = "mig_cut") -> RoleFence:
    return RoleFence(conn=conn, fence_id=fence_id, databases=DATABASES, control_schema=CONTROL,
                     replication_role="repl", exclude_roles=["monitor"])


def test_fence_holds_against_every_client_and_unblock_restores_exactly(source):
    with connect(source, "appdb") as admin:
        before = security_snapshot(admin)
        app = connect(source, "appdb", user="app_rw")
        app.execute("INSERT INTO app.items (v) VALUES ('before')")

        fence = role_fence(admin)
        planned = fence.prepare()
        assert planned["roles"] == ["App Reader", "app_rw"]
        assert planned["kept"] == ["monitor", "postgres", "repl"]
        blocked = fence.block()
        assert blocked["sessions_ended"] >= 1

        # The open session is gone: lifting read-only is not even possible.
        with pytest.raises(psycopg.OperationalError):
            app.execute("SET default_transaction_read_only = off")
            app.execute("INSERT INTO app.items (v) VALUES ('during')")
        app.close()
        with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
            connect(source, "appdb", user="app_rw")

        # Each layer holds on its own: with LOGIN given back by hand, CONNECT is still revoked...
        admin.execute("ALTER ROLE app_rw LOGIN")
        for db in DATABASES:
            with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
                connect(source, db, user="app_rw")
        # ...and where it may connect, sessions start read-only.
        with connect(source, "postgres", user="app_rw") as elsewhere:
            assert elsewhere.execute("SHOW default_transaction_read_only").fetchone()[0] == "on"
        admin.execute("ALTER ROLE app_rw NOLOGIN")

        # The replication role and the excluded role still get in, though CONNECT left PUBLIC.
        for user in ("repl", "monitor"):
            for db in DATABASES:
                with connect(source, db, user=user) as kept:
                    assert kept.execute("SELECT 1").fetchone()[0] == 1
        # A role that could not log in before is not touched.
        assert "legacy" not in fence.session_roles()

        # Rerun while fenced: the first record of each object (the real previous state) stays.
        recorded = admin.execute(f"SELECT kind, object, previous FROM {CONTROL}.cutover_state "
                                 "WHERE fence_id = 'mig_cut' AND kind NOT IN ('fence') ORDER BY 1, 2").fetchall()
        fence.block()
        assert admin.execute(f"SELECT kind, object, previous FROM {CONTROL}.cutover_state "
                             "WHERE fence_id = 'mig_cut' AND kind NOT IN ('fence') ORDER BY 1, 2").fetchall() == recorded
        assert ("role_read_only", "App Reader", {"value": "off"}) in recorded

        restored = unblock_writes(admin, CONTROL, "mig_cut")
        assert restored["restored"]
        assert security_snapshot(admin) == before
        assert unblock_writes(admin, CONTROL, "mig_cut")["restored"] == []
        assert security_snapshot(admin) == before

    with connect(source, "appdb", user="app_rw") as app:
        app.execute("INSERT INTO app.items (v) VALUES ('after')")


def test_bad_names_fail_before_anything_changes(source):
    with connect(source, "appdb") as admin:
        before = security_snapshot(admin)
        with pytest.raises(CutoverError, match="nobody"):
            RoleFence(conn=admin, fence_id="bad", databases=DATABASES, control_schema=CONTROL,
                      replication_role="repl", roles=["app_rw", "nobody"]).prepare()
        with pytest.raises(CutoverError, match="cannot be fenced"):
            RoleFence(conn=admin, fence_id="bad", databases=DATABASES, control_schema=CONTROL,
                      replication_role="repl", roles=["repl"]).prepare()
        with pytest.raises(CutoverError, match="replication_role"):
            RoleFence(conn=admin, fence_id="bad", databases=DATABASES, control_schema=CONTROL,
                      replication_role="no_such_role").prepare()
        with pytest.raises(CutoverError, match="databases"):
            RoleFence(conn=admin, fence_id="bad", databases=["nodb"], control_schema=CONTROL,
                      replication_role="repl").prepare()
        with pytest.raises(ValueError, match="databases"):
            RoleFence(conn=admin, fence_id="bad", databases=[], control_schema=CONTROL, replication_role="repl")
        assert security_snapshot(admin) == before


def test_drain_waits_for_writers_refuses_prepared_transactions_and_can_end_every_session(source):
    drain_args = {"databases": DATABASES, "control_schema": CONTROL, "fence_id": "mig_drain", "allowed_roles": ["repl"]}
    with connect(source, "appdb") as admin:
        drain = SourceDrain(conn=admin, **drain_args)
        drain.prepare()
        quiet = drain.drain(5, end_sessions_of=[])
        assert quiet <= drain.drain(5, end_sessions_of=[])

        # A prepared transaction survives every session; the drain names it instead of waiting forever.
        with connect(source, "appdb") as other:
            other.execute("BEGIN")
            other.execute("INSERT INTO app.items (v) VALUES ('prepared')")
            other.execute("PREPARE TRANSACTION 'held_by_someone'")
        with pytest.raises(CutoverError, match="held_by_someone"):
            drain.drain(0.3, end_sessions_of=[])
        admin.execute("ROLLBACK PREPARED 'held_by_someone'")

        # An open transaction that has written (a role the fence keeps) is waited for until it ends.
        monitor = connect(source, "appdb", user="monitor")
        monitor.execute("BEGIN")
        monitor.execute("CREATE TEMP TABLE t (x int)")
        with pytest.raises(CutoverError, match="open transactions"):
            drain.drain(0.3, end_sessions_of=[])
        monitor.execute("COMMIT")
        drain.drain(5, end_sessions_of=[])

        # With no role list (a network fence), every other client session in the databases is ended.
        app = connect(source, "appdb", user="app_rw")
        kept = connect(source, "appdb", user="repl")
        drain.drain(5, end_sessions_of=None)
        with pytest.raises(psycopg.OperationalError):
            app.execute("SELECT 1")
        with pytest.raises(psycopg.OperationalError):
            monitor.execute("SELECT 1")
        assert kept.execute("SELECT 1").fetchone()[0] == 1
        for conn in (app, kept, monitor):
            conn.close()


class Replication:
    """appdb replicated into a clone of the source by native CDC, as the DAG sets it up."""

    def __init__(self, pg_servers, source, name: str, *, slot: str | None = None, subscription: str | None = None):
        self.slot = slot or f"slot_{name}"
        self.subscription = subscription or f"sub_{name}"
        with connect(source, "appdb") as src:
            create_publication(src, "pub_cut", ["app"])
            src.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (self.slot,))
        self.target = pg_servers.clone(source)
        with connect(self.target, "appdb") as tgt:
            # The clone carries the source's control schema (and its fence records); the target's is its own.
            tgt.execute(f"DROP SCHEMA IF EXISTS {CONTROL} CASCADE")
            self.enable_ddl = disable_user_triggers(tgt, ["app"], control_schema=CONTROL)
            create_subscription(tgt, self.subscription, source.conninfo("appdb"), "pub_cut", self.slot)
            advance_origin(tgt, self.subscription, find_redo_done(self.target.log_text()))

    def parts(self, source_conn, target_conn, fence_id: str):
        fence = role_fence(source_conn, fence_id)
        drain = SourceDrain(conn=source_conn, databases=DATABASES, control_schema=CONTROL, fence_id=fence_id,
                            allowed_roles=["repl"])
        cdc = NativeCdc(source_conn=source_conn,
                        links=[NativeLink("appdb", self.slot, self.subscription, target_conn)])
        opener = LocalTargetOpener(conn=source_conn, control_schema=CONTROL, fence_id=fence_id,
                                   endpoint={"host": "127.0.0.1", "port": self.target.port, "databases": ["appdb"]})
        return fence, drain, cdc, opener

    def drop_slot(self, source) -> None:
        with connect(source, "appdb") as src:
            src.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s "
                        "AND NOT active", (self.slot,))


def test_cutover_with_a_concurrent_writer(pg_servers, source):
    repl = Replication(pg_servers, source, "ok")
    writer = AppWriter(source.conninfo("appdb", user="app_rw"))
    writer.start()
    wait_for(lambda: len(writer.written) >= 50, 30, "the writer to get going")
    with connect(source, "appdb") as src, connect(repl.target, "appdb") as tgt, connect(source, "appdb") as reader:
        before = security_snapshot(src)
        observed = []

        def observe_quiet():
            # Inside the window the writer keeps trying; the source must not change.
            first = reader.execute("SELECT count(*) FROM app.items").fetchone()[0]
            wait_for(lambda: writer.failures >= 3, 10, "the writer to be refused")
            observed.append((first, reader.execute("SELECT count(*) FROM app.items").fetchone()[0]))

        def sync():
            return sync_sequences(tgt, read_sequences(src, ["app"]))

        fence, drain, cdc, opener = repl.parts(src, tgt, "mig_ok")
        timeline = run_cutover(fence=fence, drain=drain, cdc=cdc, opener=opener, drain_timeout_s=30,
                               after_stop=[("observe_quiet", observe_quiet), ("sync_sequences", sync),
                                           ("enable_triggers", lambda: enable_triggers(tgt, repl.enable_ddl))])
        writer.stop()

        assert timeline["status"] == "completed"
        assert [s["step"] for s in timeline["steps"]] == [
            "prepare_fence", "prepare_drain", "prepare_cdc", "block_writes", "drain_source", "cdc_applied",
            "stop_cdc", "observe_quiet", "sync_sequences", "enable_triggers", "open_target"]
        assert all(s["ok"] for s in timeline["steps"])
        assert timeline["writes_blocked_at"] and timeline["target_open_at"] and timeline["final_lsn"]
        assert timeline["write_blocked_seconds"] > 0
        assert set(timeline["durations"]) == {s["step"] for s in timeline["steps"]}
        assert observed[0][0] == observed[0][1]

        # Every acknowledged write reached the target, and nothing else.
        source_ids = [r[0] for r in src.execute("SELECT id FROM app.items ORDER BY id")]
        target_ids = [r[0] for r in tgt.execute("SELECT id FROM app.items ORDER BY id")]
        assert source_ids == target_ids
        assert set(writer.written) <= set(target_ids)
        # Sequences continue past the last id, and the trigger fires again on the target.
        new_id = tgt.execute("INSERT INTO app.items (v) VALUES ('on target') RETURNING id").fetchone()[0]
        assert new_id > max(source_ids)
        assert tgt.execute("SELECT count(*) FROM app.audit WHERE item_id = %s", (new_id,)).fetchone()[0] == 1
        # CDC is stopped and detached: the subscription is gone, the source's slot stays for cleanup.
        assert subscription_state(tgt, repl.subscription) is None
        assert src.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (repl.slot,)).fetchone()[0] == 1
        target = src.execute(f"SELECT previous FROM {CONTROL}.cutover_state WHERE fence_id = 'mig_ok' AND kind = 'target'").fetchone()[0]
        assert target["port"] == repl.target.port

        # The source stays fenced after a cutover: once the target is open, unblocking changes nothing
        # unless forced (the application moved back); forced, it undoes the fence exactly.
        with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
            connect(source, "appdb", user="app_rw")
        assert unblock_writes(src, CONTROL, "mig_ok")["restored"] == []
        with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
            connect(source, "appdb", user="app_rw")
        assert unblock_writes(src, CONTROL, "mig_ok", force=True)["restored"]
    with connect(source, "appdb") as src:
        assert security_snapshot(src) == before
    repl.drop_slot(source)


def test_abort_when_cdc_cannot_catch_up_restores_writes(pg_servers, source):
    repl = Replication(pg_servers, source, "stuck")
    with connect(source, "appdb") as src, connect(repl.target, "appdb") as tgt, connect(repl.target, "appdb") as locker:
        before = security_snapshot(src)
        writer = AppWriter(source.conninfo("appdb", user="app_rw"))
        # The target's apply worker waits on this lock, so CDC cannot pass the source's final LSN.
        locker.execute("BEGIN")
        locker.execute("LOCK TABLE app.items IN ACCESS EXCLUSIVE MODE")
        writer.start()
        wait_for(lambda: len(writer.written) >= 50, 30, "the writer to get going")

        fence, drain, cdc, opener = repl.parts(src, tgt, "mig_stuck")
        with pytest.raises(CutoverAborted) as aborted:
            run_cutover(fence=fence, drain=drain, cdc=cdc, opener=opener, drain_timeout_s=10, apply_timeout_s=1.5)
        error = aborted.value
        assert error.failed_step == "cdc_applied"
        assert "cutover aborted at step 'cdc_applied'" in str(error) and "restored exactly" in str(error)
        assert "did not apply past the source's final LSN" in str(error)
        steps = {s["step"]: s for s in error.timeline["steps"]}
        assert steps["cdc_applied"]["ok"] is False and steps["restore_writes"]["ok"] is True
        assert "open_target" not in steps and "stop_cdc" not in steps
        assert error.timeline["status"] == "aborted" and error.timeline["writes_restored_at"]
        assert security_snapshot(src) == before

        # The writer was refused while fenced and writes again now.
        refused = writer.failures
        assert refused > 0
        count = len(writer.written)
        wait_for(lambda: len(writer.written) > count + 10, 30, "the writer to write again")
        writer.stop()

        # CDC was never stopped: once the target lets it, it catches up with everything.
        locker.execute("ROLLBACK")
        wait_for(lambda: tgt.execute("SELECT count(*) FROM app.items").fetchone()[0]
                 == src.execute("SELECT count(*) FROM app.items").fetchone()[0], 60, "CDC to catch up")
        assert subscription_state(tgt, repl.subscription)["enabled"]


def test_abort_after_cdc_stopped_names_the_step_and_says_how_to_resume(pg_servers, source):
    repl = Replication(pg_servers, source, "late")
    with connect(source, "appdb") as src, connect(repl.target, "appdb") as tgt:
        before = security_snapshot(src)
        # A sequence missing on the target makes the project's sequence sync fail inside the window.
        tgt.execute("ALTER TABLE app.items ALTER COLUMN id DROP DEFAULT")
        tgt.execute("DROP SEQUENCE app.items_id_seq")
        fence, drain, cdc, opener = repl.parts(src, tgt, "mig_late")
        with pytest.raises(CutoverAborted) as aborted:
            run_cutover(fence=fence, drain=drain, cdc=cdc, opener=opener, drain_timeout_s=10,
                        after_stop=[("sync_sequences", lambda: sync_sequences(tgt, read_sequences(src, ["app"])))])
        assert aborted.value.failed_step == "sync_sequences"
        assert "do not exist on the target" in str(aborted.value)
        assert "CDC had already been stopped" in str(aborted.value)
        assert security_snapshot(src) == before
    with connect(source, "appdb", user="app_rw") as app:
        app.execute("INSERT INTO app.items (v) VALUES ('after abort')")
    repl.drop_slot(source)


def test_operators_run_the_cutover_and_undo_the_fence(pg_servers, source, monkeypatch):
    """CutoverOperator and UnblockSourceWritesOperator as the DAG runs them (names from migration.naming)."""
    from migration import naming
    from operators.cutover import CutoverOperator, UnblockSourceWritesOperator

    repl = Replication(pg_servers, source, "op", slot=naming.slot_name("opcut", "appdb"),
                       subscription=naming.subscription_name("opcut", "appdb"))
    monkeypatch.setenv("AIRFLOW_CONN_CUT_SOURCE", f"postgres://postgres@127.0.0.1:{source.port}/postgres")
    monkeypatch.setenv("AIRFLOW_CONN_CUT_TARGET", "postgres://postgres@127.0.0.1:1/postgres")
    with connect(source, "appdb") as src:
        before = security_snapshot(src)
    writer = AppWriter(source.conninfo("appdb", user="app_rw"))
    writer.start()
    wait_for(lambda: len(writer.written) >= 20, 30, "the writer to get going")

    timeline = CutoverOperator(
        task_id="cutover", migration_id="opcut", source_conn_id="cut_source", target_conn_id="cut_target",
        databases=["appdb"], schemas=["app"], replication_role="repl", control_schema=CONTROL,
        exclude_roles=["monitor"], target_host="127.0.0.1", target_port=str(repl.target.port),
        drain_timeout_seconds=30).execute({})
    writer.stop()
    assert timeline["status"] == "completed"
    assert {"sync_sequences[appdb]", "enable_triggers[appdb]", "open_target"} <= set(timeline["durations"])
    with connect(source, "appdb") as src, connect(repl.target, "appdb") as tgt:
        assert src.execute("SELECT count(*) FROM app.items").fetchone()[0] == \
            tgt.execute("SELECT count(*) FROM app.items").fetchone()[0]
        assert set(writer.written) <= {r[0] for r in tgt.execute("SELECT id FROM app.items")}
        assert tgt.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = 'audit_item'").fetchone()[0] == "O"

    unblock = UnblockSourceWritesOperator(task_id="unblock_source_writes", migration_id="opcut",
                                          source_conn_id="cut_source", control_database="appdb",
                                          control_schema=CONTROL)
    # As the DAG's teardown after a completed cutover it leaves the fence in place.
    assert unblock.execute({}) == {"fence_id": "opcut", "restored": [],
                                   "note": "the target is open; the source stays fenced"}
    with connect(source, "appdb") as src:
        assert unblock_writes(src, CONTROL, "opcut", force=True)["restored"]
    with connect(source, "appdb") as src:
        assert security_snapshot(src) == before
    repl.drop_slot(source)
