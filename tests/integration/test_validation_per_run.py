"""Validation state belongs to one run (issue 8, scenario 7), on real PostgreSQL 15 servers.

The example: a first run validates schema ``app`` and is clean. A second run of the same migration also
migrates schema ``extra``, whose table lacks 500 rows on the target. Keyed by the migration alone, the
second run only rechecked the first run's (no) failures and reported clean with ``tables=1``; each run
must compare everything itself, and the gate must show what this run compared.

Nothing is stood in: the sensor runs as the DAG runs it (templates rendered from a run's context), with
Airflow connections from AIRFLOW_CONN_* variables; the target is a pg_basebackup clone of the source.
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from migration import guardrails
from migration.validation import run_validation
from triggers.poll import resolve_check

pytestmark = [pytest.mark.integration]

CONTROL = "migration_control"
MIGRATION = "orders_move"


def connect(server, dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(server.conninfo(dbname), autocommit=True)


@pytest.fixture
def pair(pg_servers_fn, monkeypatch):
    """``app`` equal on both sides; ``extra.t`` has 500 rows on the source that the target lacks."""
    source = pg_servers_fn.new("runsrc")
    with connect(source) as src:
        src.execute("CREATE SCHEMA app; CREATE SCHEMA extra")
        src.execute("CREATE TABLE app.orders (id int PRIMARY KEY, v text)")
        src.execute("INSERT INTO app.orders SELECT g, 'v' || g FROM generate_series(1, 1000) g")
        src.execute("CREATE TABLE extra.t (id int PRIMARY KEY, v text)")
    clone = pg_servers_fn.clone(source)
    with connect(source) as src:
        src.execute("INSERT INTO extra.t SELECT g, 'x' || g FROM generate_series(1, 500) g")
    monkeypatch.setenv("AIRFLOW_CONN_RUN_SRC", f"postgres://postgres@127.0.0.1:{source.port}/postgres")
    monkeypatch.setenv("AIRFLOW_CONN_RUN_TGT", f"postgres://postgres@127.0.0.1:{clone.port}/postgres")
    return source, clone


def sensor(schemas: list[str]):
    from sensors.validation import ValidationCleanSensor

    # As the DAG builds it: the migration id as validation_id, the run id left to its template.
    return ValidationCleanSensor(task_id="wait_validation_clean", source_conn_id="run_src", target_conn_id="run_tgt",
                                 database="postgres", schemas=schemas, validation_id=MIGRATION,
                                 control_schema=CONTROL, chunk_rows=100, max_rechecks=2)


def run_task(task, run_id: str):
    """Render the task's templates for a run, as the worker does, then execute it."""
    context = {"run_id": run_id}
    task.render_template_fields(context)
    return task.execute(context)


@pytest.mark.safety
def test_a_later_run_with_an_extra_schema_compares_it_and_is_not_clean(pair):
    from airflow.sdk.exceptions import TaskDeferred

    first = run_task(sensor(["app"]), "manual__run1")
    assert first["clean"] and first["tables"] == 1 and first["rows_compared"] == 1000

    # The second run migrates one more schema; its table lacks 500 rows on the target.
    with pytest.raises(TaskDeferred) as deferred:
        run_task(sensor(["app", "extra"]), "manual__run2")
    _, trigger = deferred.value.trigger.serialize()
    assert trigger["kwargs"]["run_id"] == "manual__run2" and trigger["kwargs"]["validation_id"] == MIGRATION
    assert first["run_id"] == "manual__run1"

    # What the deferred sensor checks next: this run's own full pass, not the first run's clean one.
    done, payload = resolve_check(trigger["check"])(**trigger["kwargs"])
    assert not done and not payload["clean"]
    assert payload["tables"] == 2 and payload["rows_compared"] == 1500
    assert payload["by_schema"] == {"app": {"tables": 1, "rows": 1000}, "extra": {"tables": 1, "rows": 500}}
    assert payload["mismatched_chunks"] >= 1 and any('"extra"."t"' in f for f in payload["failures"])

    # The gate shows what this run compared and refuses.
    rails = guardrails.Guardrails(max_lag_bytes=1 << 30)
    now = datetime.now(UTC)
    found = guardrails.problems(rails, lag_bytes={"postgres": 0}, validation={"postgres": payload}, now=now,
                                run_id="manual__run2")
    assert any("database postgres: validation is not clean" in p for p in found)
    body = guardrails.summary(rails, lag_bytes={"postgres": 0}, validation={"postgres": payload}, now=now,
                              steps=["block writes"], run_id="manual__run2")
    assert "2 tables, 1500 rows compared (`app`: 1 tables, 1000 rows; `extra`: 1 tables, 500 rows)" in body
    assert "in run `manual__run2`" in body


@pytest.mark.safety
def test_state_is_per_run_and_a_retry_of_the_same_run_resumes(pair):
    source, clone = pair
    with connect(source) as src, connect(clone) as tgt:
        args = {"schemas": ["app", "extra"], "control_schema": CONTROL, "validation_id": MIGRATION,
                "chunk_rows": 100, "max_rechecks": 5, "settle_s": 0.0}
        found = run_validation(src, tgt, run_id="r1", **args)
        assert not found["clean"] and found["tables"] == 2
        # The target catches up; the same run's next check rechecks only what differed.
        tgt.execute("INSERT INTO extra.t SELECT g, 'x' || g FROM generate_series(1, 500) g")
        fixed = run_validation(src, tgt, run_id="r1", **args)
        assert fixed["clean"] and fixed["compared_at"] == found["compared_at"]
        # A later run compares everything again and finds a difference made since.
        tgt.execute("DELETE FROM app.orders WHERE id = 7")
        later = run_validation(src, tgt, run_id="r2", **args)
        assert not later["clean"] and any('"app"."orders"' in f for f in later["failures"])
        # Each run keeps its own record.
        runs = dict(tgt.execute(f"SELECT run_id, tables FROM {CONTROL}.validation_runs "
                                "WHERE validation_id LIKE %s", (f"{MIGRATION}@%",)).fetchall())
        assert runs == {"r1": 2, "r2": 2}

