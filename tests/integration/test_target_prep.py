"""Control schema and trigger disabling/enabling on a real PostgreSQL 15 server.

Round trips are counted from libpq's own protocol trace (one ReadyForQuery per round trip).
The target-side tasks are also run, as the DAG builds them, with a target connection that points
at the source: they must change nothing there. Nothing is stood in.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import pq

from migration.target_prep import (
    TargetPrepError,
    create_control_schema,
    disable_user_triggers,
    enable_triggers,
    saved_trigger_ddl,
)

pytestmark = pytest.mark.integration

SETUP = """
CREATE SCHEMA app;
CREATE TABLE app.audit (note text);
CREATE FUNCTION app.log_it() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN INSERT INTO app.audit VALUES (TG_NAME || ' on ' || TG_TABLE_NAME); RETURN NEW; END $$;
CREATE TABLE app.parent (id int PRIMARY KEY);
CREATE TABLE app.child (id int PRIMARY KEY, parent_id int REFERENCES app.parent (id));
CREATE TRIGGER on_child AFTER INSERT ON app.child FOR EACH ROW EXECUTE FUNCTION app.log_it();
CREATE TRIGGER was_off AFTER INSERT ON app.child FOR EACH ROW EXECUTE FUNCTION app.log_it();
ALTER TABLE app.child DISABLE TRIGGER was_off;
CREATE TRIGGER always_on AFTER INSERT ON app.child FOR EACH ROW EXECUTE FUNCTION app.log_it();
ALTER TABLE app.child ENABLE ALWAYS TRIGGER always_on;
CREATE CONSTRAINT TRIGGER deferred_check AFTER INSERT ON app.child DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW EXECUTE FUNCTION app.log_it();
CREATE TABLE app.events (id int, at date) PARTITION BY RANGE (at);
CREATE TABLE app.events_2024 PARTITION OF app.events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TRIGGER on_event AFTER INSERT ON app.events FOR EACH ROW EXECUTE FUNCTION app.log_it();
CREATE SCHEMA other;
CREATE TABLE other.t (id int);
CREATE TRIGGER not_migrated AFTER INSERT ON other.t FOR EACH ROW EXECUTE FUNCTION app.log_it();
"""

EXPECTED_ENABLE = "\n".join([
    "ALTER TABLE ONLY app.child ENABLE TRIGGER on_child;",
    "ALTER TABLE ONLY app.events ENABLE TRIGGER on_event;",
    "ALTER TABLE ONLY app.events_2024 ENABLE TRIGGER on_event;",
])


@pytest.fixture(scope="module")
def server(pg_servers):
    server = pg_servers.new("target")
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        conn.execute(SETUP)
    return server


@pytest.fixture
def conn(server):
    with psycopg.connect(server.conninfo(), autocommit=True) as c:
        yield c


def trigger_states(conn) -> dict[tuple[str, str], str]:
    return {
        (rel, name): state
        for rel, name, state in conn.execute(
            "SELECT tgrelid::regclass::text, tgname, tgenabled::text FROM pg_trigger ORDER BY 1, 2"
        )
    }


@contextmanager
def round_trips(conn):
    """Counts the client/server round trips made inside the block, from libpq's protocol trace."""
    fd, path = tempfile.mkstemp()
    counted = {}
    conn.pgconn.trace(fd)
    conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
    try:
        yield counted
    finally:
        conn.pgconn.untrace()
        os.close(fd)
        with open(path) as trace:
            counted["n"] = sum(1 for line in trace if line.startswith("B\t") and "\tReadyForQuery\t" in line)
        os.unlink(path)


def audit_count(conn) -> int:
    return conn.execute("SELECT count(*) FROM app.audit").fetchone()[0]


def test_create_control_schema_is_idempotent(conn):
    assert create_control_schema(conn, "dms_control_schema") == "dms_control_schema"
    assert create_control_schema(conn, "dms_control_schema") == "dms_control_schema"
    assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'dms_control_schema'").fetchone()[0] == 1
    with pytest.raises(ValueError, match="^control_schema: "):
        create_control_schema(conn, "")


def test_disable_then_enable_restores_exactly_the_enabled_user_triggers(conn):
    before = trigger_states(conn)
    ddl = disable_user_triggers(conn, ["app"], control_schema="mig_control")
    assert ddl == EXPECTED_ENABLE

    during = trigger_states(conn)
    for key in [("app.child", "on_child"), ("app.events", "on_event"), ("app.events_2024", "on_event")]:
        assert before[key] == "O" and during[key] == "D"
    changed = {key for key in before if before[key] != during[key]}
    assert changed == {("app.child", "on_child"), ("app.events", "on_event"), ("app.events_2024", "on_event")}
    # Left alone: already disabled, ALWAYS, constraint, internal (foreign key) and unmigrated triggers.
    assert during[("app.child", "was_off")] == "D"
    assert during[("app.child", "always_on")] == "A"
    assert during[("app.child", "deferred_check")] == "O"
    assert during[("other.t", "not_migrated")] == "O"

    # A rerun after they were disabled returns the saved DDL, not an empty one.
    assert disable_user_triggers(conn, ["app"], control_schema="mig_control") == EXPECTED_ENABLE
    assert trigger_states(conn) == during
    assert saved_trigger_ddl(conn, "mig_control") == EXPECTED_ENABLE

    conn.execute("INSERT INTO app.parent VALUES (1)")
    audited = audit_count(conn)
    conn.execute("INSERT INTO app.child VALUES (1, 1)")
    assert audit_count(conn) == audited + 2  # always_on and deferred_check only

    with round_trips(conn) as trips:
        assert enable_triggers(conn, ddl) == 3
    assert trips["n"] == 1
    assert trigger_states(conn) == before
    conn.execute("INSERT INTO app.child VALUES (2, 1)")
    assert audit_count(conn) == audited + 2 + 3


def test_rerun_after_enabling_disables_the_same_triggers_again(conn):
    # Continues from the saved state: a cleared disable task finds the saved DDL and reapplies it.
    assert trigger_states(conn)[("app.child", "on_child")] == "O"
    assert disable_user_triggers(conn, ["app"], control_schema="mig_control") == EXPECTED_ENABLE
    assert trigger_states(conn)[("app.child", "on_child")] == "D"
    enable_triggers(conn, EXPECTED_ENABLE)


def test_other_schemas_on_rerun_are_refused(conn):
    with pytest.raises(TargetPrepError, match=r"already holds trigger DDL for schemas \['app'\]"):
        disable_user_triggers(conn, ["app", "other"], control_schema="mig_control")
    assert trigger_states(conn)[("other.t", "not_migrated")] == "O"


def test_no_triggers_saves_empty_ddl(conn):
    conn.execute("CREATE SCHEMA IF NOT EXISTS plain; CREATE TABLE IF NOT EXISTS plain.t (id int)")
    assert disable_user_triggers(conn, ["plain"], control_schema="plain_control") == ""
    assert saved_trigger_ddl(conn, "plain_control") == ""
    with round_trips(conn) as trips:
        assert enable_triggers(conn, "") == 0
    assert trips["n"] == 0


def test_enable_refuses_anything_but_trigger_ddl(conn):
    conn.execute("CREATE TABLE IF NOT EXISTS app.keep_me (id int)")
    for bad in [
        "ALTER TABLE ONLY app.child ENABLE TRIGGER on_child; DROP TABLE app.keep_me;",
        "DROP TABLE app.keep_me;",
        "ALTER TABLE ONLY app.child ENABLE TRIGGER on_child",
        'ALTER TABLE ONLY app.child ENABLE TRIGGER "x"; DROP TABLE app.keep_me; --";',
        "ALTER TABLE ONLY app.child DISABLE TRIGGER on_child;",
    ]:
        with pytest.raises(ValueError, match="^ddl: only 'ALTER TABLE ONLY"):
            enable_triggers(conn, bad)
    assert conn.execute("SELECT to_regclass('app.keep_me') IS NOT NULL").fetchone()[0]


def test_enable_is_all_or_nothing(conn):
    disable_user_triggers(conn, ["app"], control_schema="mig_control")
    broken = EXPECTED_ENABLE + "\nALTER TABLE ONLY app.child ENABLE TRIGGER gone_meanwhile;"
    with pytest.raises(psycopg.errors.UndefinedObject):
        enable_triggers(conn, broken)
    assert trigger_states(conn)[("app.child", "on_child")] == "D"
    enable_triggers(conn, EXPECTED_ENABLE)


def test_bad_input_is_refused_before_anything_is_created(conn):
    with pytest.raises(ValueError, match="^schemas: "):
        disable_user_triggers(conn, "app", control_schema="fresh_control")
    with pytest.raises(ValueError, match="^schemas: "):
        disable_user_triggers(conn, [], control_schema="fresh_control")
    with pytest.raises(ValueError, match="^control_schema: "):
        disable_user_triggers(conn, ["app"], control_schema="app")
    with pytest.raises(ValueError, match=r"^schemas\[1\]: "):
        disable_user_triggers(conn, ["app", "x" * 64], control_schema="fresh_control")
    assert conn.execute("SELECT to_regnamespace('fresh_control') IS NULL").fetchone()[0]
    assert saved_trigger_ddl(conn, "fresh_control") is None


@pytest.fixture(scope="module")
def other_server(pg_servers):
    """A second server: the source, as seen from the target's tests (the target is not a clone of it)."""
    return pg_servers.new("source")


def test_trigger_operators_with_airflow_connections(monkeypatch, server, other_server, conn):
    from operators.target_prep import CreateControlSchemaOperator, DisableTargetTriggersOperator

    monkeypatch.setenv("AIRFLOW_CONN_MIG_TARGET", "postgresql://postgres@127.0.0.1:1/postgres")
    monkeypatch.setenv("AIRFLOW_CONN_MIG_SOURCE", f"postgresql://postgres@127.0.0.1:{other_server.port}/postgres")
    port = str(server.port)  # rendered from XCom, so a string
    schema = CreateControlSchemaOperator(task_id="create_control_schema", conn_id="mig_target", database="postgres",
                                         control_schema="op_control", port=port, source_conn_id="mig_source")
    assert schema.execute({}) == "op_control"
    assert saved_trigger_ddl(conn, "op_control") is None

    before = trigger_states(conn)
    disable = DisableTargetTriggersOperator(task_id="disable_triggers", target_conn_id="mig_target",
                                            source_conn_id="mig_source", database="postgres", schemas=["app"],
                                            control_schema="op_control", target_port=port)
    assert disable.execute({}) == EXPECTED_ENABLE
    assert trigger_states(conn)[("app.child", "on_child")] == "D"
    # The cutover enables them again with the saved DDL (operators.cutover.CutoverOperator).
    assert enable_triggers(conn, saved_trigger_ddl(conn, "op_control")) == 3
    assert trigger_states(conn) == before

    with pytest.raises(ValueError, match="^target_port: "):
        DisableTargetTriggersOperator(task_id="x", target_conn_id="mig_target", source_conn_id="mig_source",
                                      database="postgres", schemas=["app"], control_schema="op_control",
                                      target_port="fivefourthreetwo").execute({})


# --- scenario 10: a target connection that reaches the source ------------------------------------


GUARDED_YAML = """
migration_id: guarded
platform: local
initial_load: pg_basebackup
cdc_engine: native
databases: [app]
schemas: [app]
control_schema: guarded_control
source:
  conn_id: guarded_source
target:
  conn_id: guarded_target
  data_directory: /tmp/guarded-clone
  port: {clone_port}
cutover:
  approval: auto
  write_block: roles
  application_roles: [app_writer]
"""


def source_state(server, database) -> dict:
    with psycopg.connect(server.conninfo(database), autocommit=True) as c:
        return {
            "slots": sorted(r[0] for r in c.execute("SELECT slot_name FROM pg_replication_slots "
                                                    "WHERE starts_with(slot_name, %s)", (database,))),
            "triggers": trigger_states(c),
            "schemas": sorted(r[0]
                              for r in c.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'guarded%'")),
            "subscriptions": sorted(r[0] for r in c.execute("SELECT subname FROM pg_subscription")),
        }


@pytest.fixture(scope="module")
def wired_dag(pg_servers, tmp_path_factory):
    """The DAG built from a YAML whose clone listens on target.port, while the target connection points at
    the source (port mix-up); and that source, with its own triggers and other consumers' slots."""
    from dag_factory import build_dag
    from migration.config import load_config
    from migration.localpg import free_port

    source = pg_servers.new("prod")
    path = tmp_path_factory.mktemp("guarded") / "guarded.yaml"
    path.write_text(GUARDED_YAML.format(clone_port=free_port()))
    return build_dag(load_config(path)), source


@pytest.mark.safety
@pytest.mark.parametrize("task_id", ["drop_copied_slots", "prepare_target.create_target_control_schema",
                                     "prepare_target.disable_target_triggers", "start_cdc.create_subscription"])
def test_target_task_as_wired_refuses_a_target_connection_that_reaches_the_source(monkeypatch, wired_dag, task_id):
    """Scenario 10: a task of the DAG that changes the target fails before changing anything when its target
    connection reaches the source: the source keeps its slots (other consumers' too), its triggers stay
    enabled, no control schema appears there and no subscription is made there."""
    import copy

    dag, source = wired_dag
    database = "app_" + task_id.rpartition(".")[2]  # one fresh source database per task
    with psycopg.connect(source.conninfo(), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {database}")
    with psycopg.connect(source.conninfo(database), autocommit=True) as c:
        c.execute(SETUP)
        c.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (f"{database}_consumer",))
        c.execute("SELECT pg_create_physical_replication_slot(%s, true)", (f"{database}_standby",))
    url = f"postgresql://postgres@127.0.0.1:{source.port}/{database}"
    monkeypatch.setenv("AIRFLOW_CONN_GUARDED_SOURCE", url)
    monkeypatch.setenv("AIRFLOW_CONN_GUARDED_TARGET", url)  # the mistake: the source, not the clone's port
    before = source_state(source, database)
    assert before["slots"] == [f"{database}_consumer", f"{database}_standby"] and before["schemas"] == []

    task = copy.copy(dag.get_task(task_id))
    # The run-time values the scheduler would render: the run's database, schemas, names and clone LSN.
    runtime = {"database": database, "schemas": ["app"], "subscription": "guarded_sub", "publication": "guarded_pub",
               "slot_name": "guarded_slot", "captured_lsn": "0/1000000"}
    for name, value in runtime.items():
        if hasattr(task, name):
            setattr(task, name, value)
    try:
        task.execute({})
    except Exception as exc:  # noqa: BLE001 - checked below, after the source's state
        refused = exc
    else:
        refused = None
    assert source_state(source, database) == before, f"{task_id} changed the source"
    assert type(refused).__name__ == "TargetIsSourceError", f"{task_id}: {refused!r}"
    assert "reaches the source server itself" in str(refused)
