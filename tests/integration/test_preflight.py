"""Preflight on real PostgreSQL 15 servers: each check fires on a real instance of its problem."""

from __future__ import annotations

import psycopg
import pytest

from migration.preflight import Finding, PreflightError, raise_for_failures, run_preflight

pytestmark = pytest.mark.integration

DEFAULTS = {"engine": "dms", "slots_needed": 1, "max_xact_age_s": 300, "allow_replica_identity_full": False}


@pytest.fixture(scope="module")
def server(pg_servers):
    server = pg_servers.new("src")
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA clean; CREATE TABLE clean.t (id int PRIMARY KEY, v text)")
    return server


@pytest.fixture
def conn(server):
    with psycopg.connect(server.conninfo(), autocommit=True) as c:
        yield c


def check(conn, schemas, **overrides) -> list[Finding]:
    return run_preflight(conn, schemas=schemas, **{**DEFAULTS, **overrides})


def fails(findings) -> list[Finding]:
    return [f for f in findings if f.level == "fail"]


def catalog_snapshot(conn):
    return conn.execute(
        "SELECT (SELECT count(*) FROM pg_class), (SELECT count(*) FROM pg_namespace), "
        "(SELECT count(*) FROM pg_replication_slots), "
        "(SELECT array_agg(relname::text || relreplident::text ORDER BY relname) FROM pg_class WHERE relkind = 'r')"
    ).fetchone()


def test_clean_source_passes_and_preflight_creates_nothing(conn):
    before = catalog_snapshot(conn)
    findings = check(conn, ["clean"])
    assert fails(findings) == []
    assert raise_for_failures(findings) == findings
    assert catalog_snapshot(conn) == before


def test_tables_without_key_fail_or_get_replica_identity_full(conn):
    conn.execute("""
        CREATE SCHEMA keys;
        CREATE TABLE keys.no_pk (a int, b text);
        CREATE TABLE keys.nothing (id int PRIMARY KEY);
        ALTER TABLE keys.nothing REPLICA IDENTITY NOTHING;
        CREATE TABLE keys.by_index (a int NOT NULL, b text);
        CREATE UNIQUE INDEX by_index_a ON keys.by_index (a);
        ALTER TABLE keys.by_index REPLICA IDENTITY USING INDEX by_index_a;
        CREATE TABLE keys.full_already (a int);
        ALTER TABLE keys.full_already REPLICA IDENTITY FULL;
    """)
    failing = fails(check(conn, ["keys"]))
    assert [f.object for f in failing] == ["table keys.no_pk", "table keys.nothing"]
    assert "UPDATE and DELETE on it are skipped by DMS" in failing[0].problem
    assert "ALTER TABLE keys.no_pk REPLICA IDENTITY FULL" in failing[0].fix
    native = fails(check(conn, ["keys"], engine="native"))
    assert "fail on the source once it is published" in native[0].problem

    fixed = check(conn, ["keys"], allow_replica_identity_full=True)
    assert fails(fixed) == []
    assert [(f.object, f.level) for f in fixed] == [("table keys.no_pk", "info"), ("table keys.nothing", "info")]
    assert "REPLICA IDENTITY FULL was set" in fixed[0].problem
    identities = dict(conn.execute(
        "SELECT relname::text, relreplident::text FROM pg_class WHERE relnamespace = 'keys'::regnamespace AND relkind = 'r'"
    ).fetchall())
    assert identities == {"no_pk": "f", "nothing": "f", "by_index": "i", "full_already": "f"}
    assert check(conn, ["keys"], allow_replica_identity_full=True) == []


def test_long_and_prepared_transactions(server, conn):
    with psycopg.connect(server.conninfo()) as open_tx:
        pid = open_tx.execute("SELECT pg_backend_pid()").fetchone()[0]
        conn.execute("BEGIN; CREATE TABLE clean.prep (id int); PREPARE TRANSACTION 'mig_prep'")
        try:
            found = fails(check(conn, ["clean"], max_xact_age_s=0))
            assert check(conn, ["clean"], max_xact_age_s=3600)[0].object.startswith("prepared transaction")
        finally:
            conn.execute("ROLLBACK PREPARED 'mig_prep'")
    long_tx = [f for f in found if f.object.startswith(f"transaction of pid {pid} ")]
    assert len(long_tx) == 1 and f"pg_terminate_backend({pid})" in long_tx[0].fix
    prepared = [f for f in found if f.object.startswith("prepared transaction 'mig_prep'")]
    assert len(prepared) == 1 and "ROLLBACK PREPARED 'mig_prep'" in prepared[0].fix
    assert fails(check(conn, ["clean"], max_xact_age_s=0)) == []


def test_unlogged_tables_and_large_objects(conn):
    conn.execute("CREATE SCHEMA lobs; CREATE UNLOGGED TABLE lobs.scratch (id int PRIMARY KEY);"
                 "CREATE TABLE lobs.docs (id int PRIMARY KEY, body oid)")
    before_lo = check(conn, ["lobs"])
    assert [(f.object, f.level) for f in before_lo] == [("table lobs.scratch", "fail"), ("column lobs.docs.body", "warn")]
    assert "SET LOGGED" in before_lo[0].fix
    oid = conn.execute("SELECT lo_create(0)").fetchone()[0]
    try:
        with_lo = check(conn, ["lobs"])
    finally:
        conn.execute("SELECT lo_unlink(%s)", (oid,))
    assert [(f.object, f.level) for f in with_lo] == [
        ("table lobs.scratch", "fail"), ("pg_largeobject_metadata", "fail"), ("column lobs.docs.body", "fail")]


def test_privileges(server, conn):
    conn.execute("CREATE SCHEMA priv; CREATE TABLE priv.secret (id int PRIMARY KEY); CREATE TABLE priv.open (id int PRIMARY KEY);"
                 "CREATE ROLE plain_user LOGIN; GRANT USAGE ON SCHEMA priv TO plain_user; GRANT SELECT ON priv.open TO plain_user;"
                 "CREATE ROLE repl_user LOGIN REPLICATION; GRANT USAGE ON SCHEMA priv TO repl_user;"
                 "GRANT SELECT ON ALL TABLES IN SCHEMA priv TO repl_user;")
    with psycopg.connect(server.conninfo(user="plain_user"), autocommit=True) as plain:
        found = fails(check(plain, ["priv"]))
    objects = [f.object for f in found]
    assert objects[0] == "role 'plain_user'" and "REPLICATION" in found[0].problem
    assert "table priv.secret" in objects and "table priv.open" not in objects
    with psycopg.connect(server.conninfo(user="repl_user"), autocommit=True) as repl:
        findings = check(repl, ["priv"])
    assert fails(findings) == []
    assert [f.level for f in findings] == ["warn"]  # cannot see other roles' sessions


def test_slot_and_wal_sender_headroom(conn):
    failing = fails(check(conn, ["clean"], slots_needed=21))
    assert [f.object for f in failing] == ["max_replication_slots", "max_wal_senders"]
    assert "21 needed" in failing[0].problem
    conn.execute("SELECT pg_create_logical_replication_slot('mig_rerun', 'test_decoding')")
    try:
        assert [f.object for f in fails(check(conn, ["clean"], slots_needed=20))] == ["max_replication_slots"]
        # On a rerun the migration's own existing slot needs no new room.
        assert fails(check(conn, ["clean"], slots_needed=20, slot_names=["mig_rerun"])) == []
    finally:
        conn.execute("SELECT pg_drop_replication_slot('mig_rerun')")


def test_settings_and_the_extra_settings_hook(pg_servers, conn):
    found = fails(check(conn, ["clean"], extra_settings={"rds.logical_replication": "on"}))
    assert [f.object for f in found] == ["setting rds.logical_replication"]
    assert "not known to this server" in found[0].problem
    replica = pg_servers.new("replica_wal", wal_level="replica")
    with psycopg.connect(replica.conninfo(), autocommit=True) as c:
        c.execute("CREATE SCHEMA clean; CREATE TABLE clean.t (id int PRIMARY KEY)")
        found = fails(check(c, ["clean"]))
    assert [f.object for f in found] == ["setting wal_level"]
    assert "is 'replica'; it must be 'logical'" in found[0].problem


def test_missing_schema(conn):
    found = fails(check(conn, ["clean", "nowhere"]))
    assert [f.object for f in found] == ["schema 'nowhere'"]


def test_one_error_lists_all_failures(server, conn):
    conn.execute("CREATE SCHEMA many_problems; CREATE TABLE many_problems.no_pk (a int);"
                 "CREATE UNLOGGED TABLE many_problems.u (id int PRIMARY KEY)")
    findings = check(conn, ["many_problems", "absent"], slots_needed=50)
    with pytest.raises(PreflightError) as err:
        raise_for_failures(findings)
    message = str(err.value)
    assert message.startswith("Preflight found 5 problem(s)")
    for part in ("schema 'absent'", "table many_problems.no_pk", "table many_problems.u", "max_replication_slots",
                 "max_wal_senders", "Fix: "):
        assert part in message
    assert len(err.value.failures) == 5


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"schemas": []}, "schemas"),
        ({"schemas": "clean"}, "schemas"),
        ({"schemas": ["clean", "clean"]}, "schemas"),
        ({"schemas": ["a\x00b"]}, r"schemas\[0\]"),
        ({"engine": "pglogical"}, "engine"),
        ({"slots_needed": -1}, "slots_needed"),
        ({"max_xact_age_s": "5"}, "max_xact_age_s"),
        ({"extra_settings": {"x": 1}}, "extra_settings"),
    ],
)
def test_bad_input_names_the_field_and_changes_nothing(conn, overrides, field):
    conn.execute("CREATE SCHEMA IF NOT EXISTS badinput; CREATE TABLE IF NOT EXISTS badinput.no_pk (a int)")
    kwargs = {**DEFAULTS, "schemas": ["badinput"], "allow_replica_identity_full": True, **overrides}
    with pytest.raises(ValueError, match=f"^{field}: "):
        run_preflight(conn, **kwargs)
    assert conn.execute("SELECT relreplident::text FROM pg_class WHERE oid = 'badinput.no_pk'::regclass").fetchone()[0] == "d"


def test_preflight_operator_with_airflow_connection(monkeypatch, server):
    from operators.preflight import PreflightOperator

    monkeypatch.setenv("AIRFLOW_CONN_MIG_SOURCE", f"postgresql://postgres@127.0.0.1:{server.port}/postgres")
    ok = PreflightOperator(task_id="preflight", source_conn_id="mig_source", database="postgres",
                           schemas=["clean"], engine="native")
    assert ok.execute({}) == []
    bad = PreflightOperator(task_id="preflight", source_conn_id="mig_source", database="postgres",
                            schemas=["clean", "absent"], engine="native", slots_needed=99)
    with pytest.raises(PreflightError, match="3 problem"):
        bad.execute({})
