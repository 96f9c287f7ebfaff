"""Schema drift (issue 8, scenario 9) on real PostgreSQL 15 servers and real pg_basebackup clones.

DDL on the source after the clone point is not carried by logical replication. These tests make a
source with the kinds of objects that matter for the data, clone it, and check that:
- identical sides show no drift;
- ADD COLUMN, CREATE TABLE, ALTER TYPE ... ADD VALUE and ALTER COLUMN ... TYPE on the source are each
  named, and the gate shows them while the guardrail re-check refuses the cutover until they are resolved;
- the cutover's in-window re-check (a catalog marker read against the one read ahead of the fence)
  sees every kind of DDL run after the check ahead, and passes what changes no definition;
- (tests/integration/test_native_cdc.py) the native engine's lag check names the failing apply worker and
  the drift behind it.

Nothing is stood in: the Airflow connections come from AIRFLOW_CONN_* variables as Airflow resolves them,
and the operators are called the way the DAG's tasks call them.
"""

from __future__ import annotations

import time

import psycopg
import pytest

from migration import naming
from migration.drift import SchemaDriftError, SourceSchemaWatch, catalog, check_no_drift, schema_drift

pytestmark = [pytest.mark.integration]

SCHEMA = "Shop Floor"
OTHER = "other"
MIGRATION = "drift_mig"

SETUP = f'''
CREATE SCHEMA "{SCHEMA}";
CREATE SCHEMA {OTHER};
CREATE TYPE "{SCHEMA}".mood AS ENUM ('happy', 'sad');
CREATE DOMAIN "{SCHEMA}".positive AS numeric(12, 2) CHECK (VALUE > 0);
CREATE TABLE "{SCHEMA}".customers (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL,
                                   mood "{SCHEMA}".mood DEFAULT 'happy');
CREATE TABLE "{SCHEMA}"."Orders" (id bigserial PRIMARY KEY, customer int REFERENCES "{SCHEMA}".customers,
                                  amount "{SCHEMA}".positive, at timestamptz DEFAULT now(),
                                  total numeric GENERATED ALWAYS AS (amount * 2) STORED, UNIQUE (customer, at));
CREATE INDEX orders_at ON "{SCHEMA}"."Orders" (at DESC) WHERE amount > 10;
CREATE TABLE "{SCHEMA}".events (id int, at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE "{SCHEMA}".events_2026 PARTITION OF "{SCHEMA}".events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE VIEW "{SCHEMA}".big_orders AS SELECT * FROM "{SCHEMA}"."Orders" WHERE amount > 100;
CREATE FUNCTION "{SCHEMA}".touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.at := now(); RETURN NEW; END $$;
CREATE TRIGGER touch BEFORE UPDATE ON "{SCHEMA}"."Orders" FOR EACH ROW EXECUTE FUNCTION "{SCHEMA}".touch();
CREATE SEQUENCE "{SCHEMA}".tickets INCREMENT 5;
CREATE TABLE {OTHER}.untouched (id int PRIMARY KEY);
INSERT INTO "{SCHEMA}".customers (name) SELECT 'c' || g FROM generate_series(1, 10) g;
INSERT INTO "{SCHEMA}"."Orders" (customer, amount) SELECT g, g * 3 FROM generate_series(1, 10) g;
'''


def connect(server, dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(server.conninfo(dbname), autocommit=True)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
    return value


@pytest.fixture
def pair(pg_servers_fn, monkeypatch):
    """A source with a varied schema, its logical slot (so the gate can read the lag) and a clone of it."""
    source = pg_servers_fn.new("driftsrc")
    with connect(source) as src:
        src.execute(SETUP)
        src.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')",
                    (naming.slot_name(MIGRATION, "postgres"),))
    clone = pg_servers_fn.clone(source)
    monkeypatch.setenv("AIRFLOW_CONN_DRIFT_SRC", f"postgres://postgres@127.0.0.1:{source.port}/postgres")
    # The target connection points nowhere: the run-time endpoint (as on AWS) must be used.
    monkeypatch.setenv("AIRFLOW_CONN_DRIFT_TGT", "postgres://postgres@127.0.0.1:1/postgres")
    return source, clone


def guard(clone, **overrides):
    from operators.cutover_gate import CheckGuardrailsOperator

    kwargs = {"task_id": "check_guardrails", "migration_id": MIGRATION, "source_conn_id": "drift_src",
              "databases": ["postgres"], "validation_results": [{"database": "postgres", "mismatched_chunks": 0,
                                                                 "failures": [], "tables": 4, "rows_compared": 20}],
              "max_lag_bytes": 1 << 40, "not_before": "", "not_after": "", "target_conn_id": "drift_tgt",
              "schemas": [SCHEMA], "target_host": "127.0.0.1", "target_port": str(clone.port)}
    kwargs.update(overrides)
    return CheckGuardrailsOperator(**kwargs)


def gate(clone):
    from operators.cutover_gate import CutoverGateOperator

    return CutoverGateOperator(
        task_id="approve_cutover", migration_id=MIGRATION, source_conn_id="drift_src", databases=["postgres"],
        validation_results=[{"database": "postgres", "mismatched_chunks": 0, "tables": 4, "rows_compared": 20}],
        max_lag_bytes=1 << 40, not_before="", not_after="", steps=["block writes"], target_conn_id="drift_tgt",
        schemas=[SCHEMA], target_host="127.0.0.1", target_port=str(clone.port))


@pytest.mark.safety
def test_identical_clone_has_no_drift_and_the_guardrails_pass(pair):
    source, clone = pair
    with connect(source) as src, connect(clone) as tgt:
        src.execute("SET search_path = other, public")  # a session's own search_path changes nothing
        assert schema_drift(src, tgt, [SCHEMA, OTHER]) == []
        check_no_drift(src, tgt, [SCHEMA, OTHER])
        assert src.execute("SHOW search_path").fetchone()[0] == "other, public"
        digest, objects = catalog(src, [SCHEMA])
        kinds = {kind for kind, _ in objects}
        assert {"schema", "table", "column", "constraint", "index", "sequence", "type", "view", "trigger",
                "function"} <= kinds, kinds
        assert catalog(tgt, [SCHEMA], detail=False) == (digest, {})
    # Inside a caller's open transaction (as in the critical section) the check leaves it and its settings alone.
    with psycopg.connect(source.conninfo("postgres")) as src, connect(clone) as tgt:
        src.execute("SET search_path = other")
        assert schema_drift(src, tgt, [SCHEMA]) == []
        assert src.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        assert src.execute("SHOW search_path").fetchone()[0] == "other"
    result = guard(clone).execute({"run_id": "r1"})
    assert result["schema_drift"] == {"postgres": []}
    body, found, _ = gate(clone).review({"run_id": "r1"})
    assert found == [] and "`postgres`: none" in body and "all clear" in body


@pytest.mark.safety
def test_ddl_on_the_source_after_the_clone_is_named_shown_at_the_gate_and_refused(pair):
    from airflow.sdk.exceptions import AirflowException

    source, clone = pair
    with connect(source) as src:
        src.execute(f'ALTER TABLE "{SCHEMA}"."Orders" ADD COLUMN note text')
        src.execute(f'CREATE TABLE "{SCHEMA}".returns (id int PRIMARY KEY, reason text)')
        src.execute(f"ALTER TYPE \"{SCHEMA}\".mood ADD VALUE 'angry'")
        src.execute(f'ALTER TABLE "{SCHEMA}".customers ALTER COLUMN name TYPE varchar(40)')
        src.execute(f"CREATE TABLE {OTHER}.not_migrated (id int)")  # outside the migrated schemas
    with connect(source) as src, connect(clone) as tgt:
        found = schema_drift(src, tgt, [SCHEMA])
        with pytest.raises(SchemaDriftError, match='column "Shop Floor"."Orders".note: only on the source') as err:
            check_no_drift(src, tgt, [SCHEMA], database="postgres")
    text = "\n".join(found)
    assert 'column "Shop Floor"."Orders".note: only on the source (text null)' in found
    assert 'table "Shop Floor".returns: only on the source' in text
    assert 'column "Shop Floor".returns.reason: only on the source' in text
    assert "type \"Shop Floor\".mood: the source has enum ('happy', 'sad', 'angry'); " \
           "the target has enum ('happy', 'sad')" in found
    assert 'column "Shop Floor".customers.name: the source has character varying(40) not null; ' \
           "the target has text not null" in found
    assert "not_migrated" not in text
    assert err.value.differences == found and "database postgres" in str(err.value)

    # The gate shows each differing object and the automatic decision would reject.
    body, problems, _ = gate(clone).review({"run_id": "r1"})
    assert "### Schema drift" in body and 'column "Shop Floor"."Orders".note: only on the source' in body
    assert any("schema drift" in p and '"Orders".note' in p for p in problems)
    # The guardrail re-check refuses the cutover before anything changes on the source.
    with pytest.raises(AirflowException, match=r"Cutover stopped before any change.*schema drift.*\"Orders\"\.note"):
        guard(clone).execute({"run_id": "r1"})

    # Resolved by applying the same DDL on the target: the cutover may go on.
    with connect(clone) as tgt:
        tgt.execute(f'ALTER TABLE "{SCHEMA}"."Orders" ADD COLUMN note text')
        tgt.execute(f'CREATE TABLE "{SCHEMA}".returns (id int PRIMARY KEY, reason text)')
        tgt.execute(f"ALTER TYPE \"{SCHEMA}\".mood ADD VALUE 'angry'")
        tgt.execute(f'ALTER TABLE "{SCHEMA}".customers ALTER COLUMN name TYPE varchar(40)')
    assert guard(clone).execute({"run_id": "r1"})["schema_drift"] == {"postgres": []}


@pytest.mark.safety
def test_drift_inputs_are_checked(pair):
    source, clone = pair
    with connect(source) as src, connect(clone) as tgt:
        with pytest.raises(ValueError, match="schemas"):
            schema_drift(src, tgt, [])
        with pytest.raises(ValueError, match="schemas"):
            schema_drift(src, tgt, ["x" * 64])


# DDL run after the check ahead of the fence, each with the words the re-check must name it by; each is then
# run on the target too, so the next one starts from matching sides.
DDL_AFTER_THE_CHECK = [
    (f'ALTER TABLE "{SCHEMA}".customers ADD COLUMN note text', '"Shop Floor".customers.note'),
    (f'CREATE INDEX orders_customer ON "{SCHEMA}"."Orders" (customer)', "orders_customer"),
    (f"ALTER TYPE \"{SCHEMA}\".mood ADD VALUE 'meh'", "'meh'"),
    (f'CREATE OR REPLACE FUNCTION "{SCHEMA}".touch() RETURNS trigger LANGUAGE plpgsql AS '
     '$$ BEGIN NEW.at := now() - interval \'1 s\'; RETURN NEW; END $$', '"Shop Floor".touch()'),
    (f'ALTER SEQUENCE "{SCHEMA}".tickets INCREMENT 7', "increment 7"),
    (f'ALTER TABLE "{SCHEMA}"."Orders" ALTER COLUMN at SET DEFAULT \'2026-01-01\'', "default '2026-01-01"),
    (f'CREATE OR REPLACE VIEW "{SCHEMA}".big_orders AS SELECT * FROM "{SCHEMA}"."Orders" WHERE amount > 200',
     '"Shop Floor".big_orders'),
    (f'ALTER DOMAIN "{SCHEMA}".positive SET DEFAULT 1', "default 1"),
    (f'ALTER TABLE "{SCHEMA}".customers RENAME COLUMN name TO full_name', "full_name"),
    (f'DROP TRIGGER touch ON "{SCHEMA}"."Orders"', '"Orders".touch'),
    (f'ALTER TABLE "{SCHEMA}".events DETACH PARTITION "{SCHEMA}".events_2026', "events_2026"),
    (f'ALTER TABLE "{SCHEMA}".customers REPLICA IDENTITY FULL', "replica identity full"),
    (f'ALTER TABLE "{SCHEMA}"."Orders" DROP CONSTRAINT "Orders_customer_at_key"', "Orders_customer_at_key"),
]


@pytest.mark.safety
def test_the_windows_recheck_sees_every_kind_of_ddl_run_after_the_check_ahead_of_the_fence(pair):
    source, clone = pair
    with connect(source) as src, connect(clone) as tgt, connect(source) as other:
        watch = SourceSchemaWatch(src, tgt, [SCHEMA], database="postgres")
        for ddl, named in DDL_AFTER_THE_CHECK:
            assert watch.ahead()["catalog_rows"] > 0
            assert watch.recheck() == {"source_catalog": "unchanged since the check ahead of the fence"}
            other.execute(ddl)
            with pytest.raises(SchemaDriftError) as err:
                watch.recheck()
            assert named in str(err.value), (ddl, str(err.value))
            tgt.execute(ddl)


@pytest.mark.safety
def test_the_windows_recheck_passes_what_leaves_every_definition_as_it_was(pair):
    source, clone = pair
    unchanged = {"source_catalog": "unchanged since the check ahead of the fence"}
    changed = {"source_catalog": "changed since the check ahead of the fence; the digests still match"}
    with connect(source) as src, connect(clone) as tgt, connect(source) as other:
        watch = SourceSchemaWatch(src, tgt, [SCHEMA], database="postgres")
        watch.ahead()
        # Rows, sequence values, statistics and vacuum leave the catalog's rows where they were.
        other.execute(f'INSERT INTO "{SCHEMA}".customers (name) VALUES (\'new\')')
        other.execute(f'SELECT nextval(\'"{SCHEMA}".tickets\')')
        other.execute(f'ANALYZE "{SCHEMA}".customers')
        other.execute(f'VACUUM "{SCHEMA}"."Orders"')
        assert watch.recheck() == unchanged
        # These rewrite catalog rows but no definition: the marker moves and the digests still match.
        for statement in (f'TRUNCATE "{SCHEMA}".events', f'REINDEX TABLE "{SCHEMA}".customers',
                          f'ALTER TABLE "{SCHEMA}"."Orders" DISABLE TRIGGER touch',
                          f'GRANT SELECT ON "{SCHEMA}".customers TO PUBLIC'):
            watch.ahead()
            other.execute(statement)
            assert watch.recheck() == changed, statement
        # Without the check ahead (or after a failed one), the re-check compares both sides.
        assert SourceSchemaWatch(src, tgt, [SCHEMA]).recheck() == changed
        other.execute(f'ALTER TABLE "{SCHEMA}".customers ADD COLUMN late int')
        with pytest.raises(SchemaDriftError, match="late"):
            watch.ahead()
        with pytest.raises(SchemaDriftError, match="late"):
            watch.recheck()
