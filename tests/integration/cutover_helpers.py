"""Shared by the cutover's integration tests: the source's roles and schema, a writer, and native CDC
into a pg_basebackup clone set up as the DAG sets it up (real PostgreSQL 15 on both sides)."""

from __future__ import annotations

import threading
import time

import psycopg

from migration.cutover import CutoverPlan, LocalTargetOpener, NativeCdc, NativeCdcDatabase
from migration.fence import RoleFence
from migration.journal import CutoverJournal
from migration.lsn import find_redo_done
from migration.native_cdc import advance_origin, create_publication, create_subscription
from migration.sequences import read_sequences, sync_sequences
from migration.source_quiet import ChangesAfterFinalLsn, SlotCheck, SourceDrain, bound_session
from migration.target_prep import disable_user_triggers, enable_triggers

CONTROL = "migration_control"
DATABASES = ["appdb", "Other DB"]

SETUP_CLUSTER = [
    "CREATE ROLE app_group NOLOGIN",
    "CREATE ROLE app_rw LOGIN IN ROLE app_group",
    # A member of a member: the fence reaches it too.
    "CREATE ROLE app_sub NOLOGIN IN ROLE app_group",
    "CREATE ROLE app_nested LOGIN IN ROLE app_sub",
    'CREATE ROLE "App Reader" LOGIN',
    "CREATE ROLE repl LOGIN REPLICATION",
    "CREATE ROLE monitor LOGIN",
    "CREATE ROLE legacy NOLOGIN",
    "CREATE DATABASE appdb",
    'CREATE DATABASE "Other DB"',
    # Settings the fence must leave as they were: another setting, and read-only explicitly off (globally
    # and in one migrated database).
    "ALTER ROLE app_rw SET statement_timeout = '5s'",
    'ALTER ROLE "App Reader" SET default_transaction_read_only = off',
    'ALTER ROLE "App Reader" IN DATABASE appdb SET default_transaction_read_only = off',
    'ALTER ROLE "App Reader" IN DATABASE postgres SET work_mem = \'8MB\'',
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
    "GRANT USAGE ON SCHEMA app TO app_group, monitor",
    "GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA app TO app_group, monitor",
    "GRANT USAGE ON ALL SEQUENCES IN SCHEMA app TO app_group, monitor",
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
        "logins": conn.execute(
            "SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname !~ '^pg_' ORDER BY 1").fetchall(),
        "settings": conn.execute(
            "SELECT r.rolname, coalesce(d.datname, '*'), s.setconfig FROM pg_db_role_setting s "
            "JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase "
            "ORDER BY 1, 2").fetchall(),
        "privileges": conn.execute(
            "SELECT d.datname, CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END, "
            "pg_get_userbyid(a.grantor), a.privilege_type, a.is_grantable "
            "FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a "
            "ORDER BY 1, 2, 3, 4").fetchall(),
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
                time.sleep(0.05)
        if conn is not None:
            conn.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.join(30)


def journal_for(conn, run_id: str = "run_1", migration_id: str = "mig") -> CutoverJournal:
    return CutoverJournal(conn=conn, control_schema=CONTROL, migration_id=migration_id, run_id=run_id).ensure()


def role_fence(conn, journal: CutoverJournal, **kwargs) -> RoleFence:
    args = {"databases": DATABASES, "replication_role": "repl", "roles": ["app_group", "App Reader"],
            "exclude_roles": ["monitor"], "keep_pids": [conn.info.backend_pid], **kwargs}
    return RoleFence(conn=conn, journal=journal, **args)


def can_connect(server, db: str, user: str) -> bool:
    try:
        with connect(server, db, user=user) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


class Replication:
    """appdb replicated into a clone of the source by native CDC, as the DAG sets it up."""

    def __init__(self, pg_servers, source, name: str, *, slot: str | None = None, subscription: str | None = None,
                 publication: str = "pub_cut"):
        self.slot, self.subscription = slot or f"slot_{name}", subscription or f"sub_{name}"
        self.publication = publication
        with connect(source, "appdb") as src:
            create_publication(src, self.publication, ["app"])
            src.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (self.slot,))
        self.source = source
        self.target = pg_servers.clone(source)
        self.captured = find_redo_done(self.target.log_text())
        with connect(self.target, "appdb") as tgt:
            tgt.execute(f"DROP SCHEMA IF EXISTS {CONTROL} CASCADE")
            self.enable_ddl = disable_user_triggers(tgt, ["app"], control_schema=CONTROL)
            self.resume_cdc(tgt)

    def resume_cdc(self, tgt) -> None:
        """What start_cdc.create_subscription does, on a first run and on a rerun after an abort."""
        create_subscription(tgt, self.subscription, self.source.conninfo("appdb"), self.publication, self.slot)
        advance_origin(tgt, self.subscription, self.captured)

    def plan(self, src, tgt, run_id: str, **kwargs) -> CutoverPlan:
        return native_plan(src, tgt, run_id, slot=self.slot, subscription=self.subscription,
                           publication=self.publication, target_port=self.target.port, enable_ddl=self.enable_ddl,
                           **kwargs)

    def drop_slot(self) -> None:
        with connect(self.source, "appdb") as src:
            src.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s "
                        "AND NOT active", (self.slot,))


def ids(conn) -> list[int]:
    return [r[0] for r in conn.execute("SELECT id FROM app.items ORDER BY id")]


def native_plan(src, tgt, run_id: str, *, slot: str, subscription: str, publication: str, target_port: int,
                enable_ddl: str, migration_id: str = "mig", fence_args: dict | None = None,
                journal: CutoverJournal | None = None, **kwargs) -> CutoverPlan:
    """The critical section for appdb on the given connections, with the trigger step after CDC stops (as
    CutoverOperator assembles it for DMS; for native CDC it runs ahead of the fence)."""
    for conn in (src, tgt):
        bound_session(conn, lock_timeout_s=2, statement_timeout_s=30, run=run_id)
    journal = (journal or journal_for(tgt, run_id, migration_id)).ensure()
    keep = [src.info.backend_pid]
    args = {"after_stop": [("sync_sequences", lambda: sync_sequences(tgt, read_sequences(src, ["app"]))),
                           ("enable_triggers", lambda: enable_triggers(tgt, enable_ddl))],
            "undo_after_stop": [("disable_triggers",
                                 lambda: disable_user_triggers(tgt, ["app"], control_schema=CONTROL))],
            "drain_timeout_s": 30, "resume_hint": NativeCdc.resume_hint(), **kwargs}
    return CutoverPlan(
        journal=journal, fence=role_fence(src, journal, **(fence_args or {})),
        drain=SourceDrain(conn=src, databases=DATABASES, keep_pids=keep),
        cdc=NativeCdc(source_conn=src, links=[NativeCdcDatabase("appdb", slot, subscription, tgt)]),
        proof=ChangesAfterFinalLsn(checks=[SlotCheck("appdb", src, slot, "pgoutput", publication)],
                                   databases=DATABASES, keep_pids=keep),
        opener=LocalTargetOpener(endpoint={"host": "127.0.0.1", "port": target_port, "databases": ["appdb"]}),
        databases=["appdb"], **args)


def make_source(pg_servers, name: str = "cutsrc"):
    server = pg_servers.new(name)
    with connect(server) as conn:
        for statement in SETUP_CLUSTER:
            conn.execute(statement)
    with connect(server, "appdb") as conn:
        for statement in SETUP_APPDB:
            conn.execute(statement)
    return server
