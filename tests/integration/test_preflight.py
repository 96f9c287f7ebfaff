"""Preflight on real PostgreSQL 15 servers: each check fires on a real instance of its problem.

Preflight changes nothing (a dry run stops after it); the source changes it plans are made by
apply_source_changes after proceed, with lock_timeout, and put back by restore_replica_identity
after a completed cutover. Stand-ins: none (PostgreSQL is real; the cleanup operator test gives the
operator a minimal task-instance object whose xcom_pull answers with a completed cutover's timeline).
"""

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


def other_schemas(conn, schemas) -> list[str]:
    """Every other user schema of this shared test database (the left-out check has tests of its own)."""
    return [r[0] for r in conn.execute(
        "SELECT nspname::text FROM pg_namespace WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg%%' "
        "AND NOT (nspname = ANY(%s))", (list(schemas),))]


def check(conn, schemas, **overrides) -> list[Finding]:
    if "exclude_schemas" not in overrides and isinstance(schemas, list):
        overrides["exclude_schemas"] = other_schemas(conn, schemas)
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


KEYLESS = """
    CREATE SCHEMA {s};
    CREATE TABLE {s}.no_pk (a int, b text);
    CREATE TABLE {s}.nothing (id int PRIMARY KEY);
    ALTER TABLE {s}.nothing REPLICA IDENTITY NOTHING;
    CREATE TABLE {s}.by_index (a int NOT NULL, b text);
    CREATE UNIQUE INDEX {s}_by_index_a ON {s}.by_index (a);
    ALTER TABLE {s}.by_index REPLICA IDENTITY USING INDEX {s}_by_index_a;
    CREATE TABLE {s}.full_already (a int);
    ALTER TABLE {s}.full_already REPLICA IDENTITY FULL;
"""


def identities(conn, schema):
    return dict(conn.execute(
        "SELECT relname::text, relreplident::text FROM pg_class WHERE relnamespace = %s::regnamespace "
        "AND relkind = 'r'", (schema,)).fetchall())


def test_tables_without_key_fail_or_are_planned_for_replica_identity_full(conn):
    conn.execute(KEYLESS.format(s="keys"))
    failing = fails(check(conn, ["keys"]))
    assert [f.object for f in failing] == ["table keys.no_pk", "table keys.nothing"]
    assert "UPDATE and DELETE on it are skipped by DMS" in failing[0].problem
    assert "ALTER TABLE keys.no_pk REPLICA IDENTITY FULL" in failing[0].fix
    native = fails(check(conn, ["keys"], engine="native"))
    assert "fail on the source once it is published" in native[0].problem

    planned = check(conn, ["keys"], allow_replica_identity_full=True)
    assert fails(planned) == []
    assert [(f.object, f.level) for f in planned] == [("table keys.no_pk", "info"), ("table keys.nothing", "info")]
    assert "after proceed, apply_source_changes sets REPLICA IDENTITY FULL" in planned[0].problem


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
    assert [(f.object, f.level) for f in before_lo] == [("table lobs.scratch", "fail"), ("column lobs.docs.body",
                                                                                         "warn")]
    assert "SET LOGGED" in before_lo[0].fix
    oid = conn.execute("SELECT lo_create(0)").fetchone()[0]
    try:
        with_lo = check(conn, ["lobs"])
    finally:
        conn.execute("SELECT lo_unlink(%s)", (oid,))
    assert [(f.object, f.level) for f in with_lo] == [
        ("table lobs.scratch", "fail"), ("pg_largeobject_metadata", "fail"), ("column lobs.docs.body", "fail")]


def test_privileges(server, conn):
    conn.execute("CREATE SCHEMA priv; CREATE TABLE priv.secret (id int PRIMARY KEY); CREATE TABLE priv.open (id int "
                 "PRIMARY KEY);"
                 "CREATE ROLE plain_user LOGIN; GRANT USAGE ON SCHEMA priv TO plain_user; GRANT SELECT ON priv.open TO "
                 "plain_user;"
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
    identity = conn.execute("SELECT relreplident::text FROM pg_class WHERE oid = 'badinput.no_pk'::regclass")
    assert identity.fetchone()[0] == "d"


def test_preflight_operator_with_airflow_connection(monkeypatch, server, conn):
    from operators.preflight import PreflightOperator

    monkeypatch.setenv("AIRFLOW_CONN_MIG_SOURCE", f"postgresql://postgres@127.0.0.1:{server.port}/postgres")
    others = other_schemas(conn, ["clean"])
    ok = PreflightOperator(task_id="preflight", source_conn_id="mig_source", database="postgres",
                           schemas=["clean"], engine="native", exclude_schemas=others)
    assert ok.execute({}) == []
    bad = PreflightOperator(task_id="preflight", source_conn_id="mig_source", database="postgres",
                            schemas=["clean", "absent"], engine="native", slots_needed=99, exclude_schemas=others)
    with pytest.raises(PreflightError, match="3 problem"):
        bad.execute({})


# --- issue 8, scenario 12: a dry run changes nothing; the changes come after proceed ------------------

@pytest.mark.safety
def test_preflight_with_allow_replica_identity_full_changes_nothing(pg_servers):
    server = pg_servers.new("dry")
    with psycopg.connect(server.conninfo(), autocommit=True) as c:
        c.execute(KEYLESS.format(s="dry"))
        before = catalog_snapshot(c), identities(c, "dry")
        findings = run_preflight(c, schemas=["dry"], **{**DEFAULTS, "allow_replica_identity_full": True})
        assert fails(findings) == []
        assert [f.object for f in findings if f.level == "info"] == ["table dry.no_pk", "table dry.nothing"]
        assert (catalog_snapshot(c), identities(c, "dry")) == before
        assert identities(c, "dry") == {"no_pk": "d", "nothing": "n", "by_index": "i", "full_already": "f"}


@pytest.mark.safety
def test_apply_source_changes_records_the_previous_identity_and_cleanup_restores_it(pg_servers):
    from migration.preflight import apply_source_changes, restore_replica_identity

    server = pg_servers.new("apply")
    with psycopg.connect(server.conninfo(), autocommit=True) as c:
        c.execute(KEYLESS.format(s="ap"))
        # An index identity whose index is gone replicates no key, like NOTHING.
        c.execute("CREATE TABLE ap.lost_index (a int NOT NULL); CREATE UNIQUE INDEX ap_lost ON ap.lost_index (a);"
                  "ALTER TABLE ap.lost_index REPLICA IDENTITY USING INDEX ap_lost; DROP INDEX ap.ap_lost")
        original = identities(c, "ap")
        assert apply_source_changes(c, schemas=["ap"], control_schema="mig_ctl",
                                    allow_replica_identity_full=False) == []
        assert identities(c, "ap") == original
        changes = apply_source_changes(c, schemas=["ap"], control_schema="mig_ctl", allow_replica_identity_full=True)
        assert changes == [{"table": "ap.lost_index", "previous": "USING INDEX", "now": "FULL"},
                           {"table": "ap.no_pk", "previous": "DEFAULT", "now": "FULL"},
                           {"table": "ap.nothing", "previous": "NOTHING", "now": "FULL"}]
        assert identities(c, "ap") == {**original, "no_pk": "f", "nothing": "f", "lost_index": "f"}
        # A rerun changes nothing more and still knows what the tables were before (in the control schema).
        assert apply_source_changes(c, schemas=["ap"], control_schema="mig_ctl",
                                    allow_replica_identity_full=True) == changes
        assert c.execute("SELECT count(*) FROM mig_ctl.replica_identity_changes").fetchone()[0] == 3
        # And preflight on the rerun has nothing to plan.
        assert run_preflight(c, schemas=["ap"], control_schema="mig_ctl",
                             **{**DEFAULTS, "allow_replica_identity_full": True}) == []

        lines = restore_replica_identity(c, control_schema="mig_ctl")
        assert lines == ["restored REPLICA IDENTITY NOTHING on ap.lost_index (it was USING INDEX with the index "
                         "gone, which replicates no key either)",
                         "restored REPLICA IDENTITY DEFAULT on ap.no_pk",
                         "restored REPLICA IDENTITY NOTHING on ap.nothing"]
        assert identities(c, "ap") == {**original, "lost_index": "n"}
        assert restore_replica_identity(c, control_schema="mig_ctl") == []


@pytest.mark.safety
def test_apply_source_changes_waits_at_most_lock_timeout_and_changes_nothing_then(pg_servers):
    from migration.preflight import apply_source_changes

    server = pg_servers.new("locked")
    with psycopg.connect(server.conninfo(), autocommit=True) as c, psycopg.connect(server.conninfo()) as holder:
        c.execute("CREATE SCHEMA busy; CREATE TABLE busy.no_pk (a int)")
        holder.execute("SELECT * FROM busy.no_pk")  # an open transaction holds ACCESS SHARE
        with pytest.raises(RuntimeError, match=r"table busy.no_pk: REPLICA IDENTITY FULL was not set: its lock was "
                                               r"not granted within 200 ms"):
            apply_source_changes(c, schemas=["busy"], control_schema="mig_ctl", allow_replica_identity_full=True,
                                 lock_timeout_ms=200)
        assert identities(c, "busy") == {"no_pk": "d"}
        assert c.execute("SELECT count(*) FROM mig_ctl.replica_identity_changes").fetchone()[0] == 0
        holder.rollback()
        assert apply_source_changes(c, schemas=["busy"], control_schema="mig_ctl",
                                    allow_replica_identity_full=True, lock_timeout_ms=200)[0]["previous"] == "DEFAULT"


class _CompletedCutoverTi:
    """The one thing the cleanup operator asks of its task instance: the cutover's timeline."""

    def xcom_pull(self, task_ids=None, key=None):
        return {"status": "completed"} if key is None else None


@pytest.mark.safety
def test_cleanup_after_a_completed_cutover_restores_replica_identity(monkeypatch, pg_servers):
    from operators.preflight import ApplySourceChangesOperator
    from operators.report import SourceSlotCleanupOperator

    server = pg_servers.new("cleanup")
    with psycopg.connect(server.conninfo(), autocommit=True) as c:
        c.execute("CREATE DATABASE app")
    monkeypatch.setenv("AIRFLOW_CONN_MIG_SOURCE", f"postgresql://postgres@127.0.0.1:{server.port}/postgres")
    with psycopg.connect(server.conninfo("app"), autocommit=True) as c:
        c.execute("CREATE SCHEMA s; CREATE TABLE s.no_pk (a int)")
        applied = ApplySourceChangesOperator(task_id="apply_source_changes", source_conn_id="mig_source",
                                             database="app", schemas=["s"], control_schema="mig_ctl",
                                             allow_replica_identity_full=True).execute({})
        assert applied == {"database": "app", "changes": [{"table": "s.no_pk", "previous": "DEFAULT", "now": "FULL"}]}
        assert identities(c, "s") == {"no_pk": "f"}
        plan = [{"database": "app", "slot_name": "mig_app", "publication": "mig_app_pub"}]
        cleanup = SourceSlotCleanupOperator(task_id="cleanup", source_conn_id="mig_source", plan=plan,
                                            cutover_task_id="cutover.switch_over", control_schema="mig_ctl")
        done = cleanup.execute({"ti": _CompletedCutoverTi()})
        assert "restored REPLICA IDENTITY DEFAULT on s.no_pk (source database app)" in done
        assert identities(c, "s") == {"no_pk": "d"}


# --- issue 8, scenario 8: schemas left out ------------------------------------------------------------

@pytest.mark.safety
def test_user_schemas_with_tables_must_be_migrated_or_excluded(pg_servers):
    server = pg_servers.new("leftout")
    with psycopg.connect(server.conninfo(), autocommit=True) as c:
        c.execute("CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY);"
                  "CREATE TABLE public.forgotten (id int PRIMARY KEY);"
                  "CREATE SCHEMA audit; CREATE TABLE audit.log (id int PRIMARY KEY);"
                  "CREATE SCHEMA mig_ctl; CREATE TABLE mig_ctl.state (id int PRIMARY KEY);"
                  "CREATE SCHEMA empty_one; CREATE VIEW empty_one.v AS SELECT 1 AS x")
        base = {**DEFAULTS, "control_schema": "mig_ctl"}
        found = fails(run_preflight(c, schemas=["app"], **base))
        assert [f.object for f in found] == ["schema 'audit'", "schema 'public'"]
        assert "neither migrated nor excluded" in found[0].problem and "exclude_schemas" in found[0].fix
        # A run narrowed to part of the YAML's schemas: what it drops counts as left out.
        found = fails(run_preflight(c, schemas=["app"], **{**base, "exclude_schemas": ["public"]}))
        assert [f.object for f in found] == ["schema 'audit'"]
        assert fails(run_preflight(c, schemas=["app", "audit"], **{**base, "exclude_schemas": ["public"]})) == []
        # Without the control schema named, its tables are left out like any other schema's.
        found = fails(run_preflight(c, schemas=["app", "audit"], **{**DEFAULTS, "exclude_schemas": ["public"]}))
        assert [f.object for f in found] == ["schema 'mig_ctl'"]
