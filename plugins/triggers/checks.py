"""Poll checks: the entry points that open connections from Airflow connection ids.

``PollTrigger`` and ``DeferrablePollSensor`` call these by import path (``"triggers.checks:check_native_cdc_lag"``).
Each one opens its connections and hands them to one ``migration`` function, so ``plugins/migration``
never imports Airflow. A check returns ``(done, payload)``, the payload a small JSON-able dict.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg

from hooks.postgres import connect, conninfo_for
from migration import drift, local_clone, native_cdc, validation

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# PostgreSQL side: local clone, native CDC, native validation, schema drift
# ---------------------------------------------------------------------------------------------

def check_clone_available(*, conn_id: str, dbname: str | None = None, host: str | None = None,
                          port: int | None = None) -> tuple[bool, dict[str, Any]]:
    """The local clone, reached through the target connection at ``host``/``port``, accepts connections
    and has finished recovery."""
    done, facts = local_clone.clone_available(conninfo_for(conn_id, dbname=dbname, host=host, port=port))
    return done, {"host": host, "port": port, "dbname": dbname, **facts}


def check_native_cdc_lag(*, source_conn_id: str, target_conn_id: str, database: str, slot_name: str,
                         subscription: str, max_lag_bytes: int, max_apply_age_s: float,
                         control_schema: str | None = None, schemas: Sequence[str] | None = None,
                         source_host: str | None = None, source_port: int | None = None,
                         target_host: str | None = None, target_port: int | None = None) -> tuple[bool, dict[str, Any]]:
    """(caught up, {lag_bytes, apply_age_s, ...}) for one database's slot and subscription.

    With ``control_schema`` every check is also kept as a lag sample on the target. While CDC is not
    caught up and the apply worker has failed, the payload starts with ``problem`` (what fails and where
    to look) and, with ``schemas``, carries ``schema_drift``: the objects whose definitions differ
    between source and target (migration.drift), named in the problem too.
    """
    with connect(source_conn_id, dbname=database, host=source_host, port=source_port) as source, \
            connect(target_conn_id, dbname=database, host=target_host, port=target_port) as target:
        lag = native_cdc.measure_lag(source, target, slot_name, subscription)
        if control_schema:
            native_cdc.record_lag_sample(target, control_schema, database, lag)
        ready = native_cdc.lag_ready(lag, max_lag_bytes, max_apply_age_s)
        problem = None if ready else native_cdc.apply_problem(lag, subscription)
        if problem and schemas:
            try:
                found = drift.schema_drift(source, target, list(schemas))
            except psycopg.Error as exc:
                problem += f"; the schema drift check could not run ({type(exc).__name__}: {exc})"
            else:
                lag["schema_drift"] = found
                problem += f"; {drift.drift_message(found)}" if found else "; the migrated schemas' catalogs match"
    lag["database"] = database
    if problem:
        log.warning("Database %s: %s", database, problem)
        lag = {"problem": problem, **lag}
    return ready, lag


def check_native_validation(*, source_conn_id: str, target_conn_id: str, database: str, schemas: Sequence[str],
                            control_schema: str, validation_id: str, run_id: str, chunk_rows: int = 10000,
                            max_rechecks: int = 3, slot_name: str | None = None, cdc_wait_s: float = 15.0,
                            source_host: str | None = None, source_port: int | None = None,
                            target_host: str | None = None,
                            target_port: int | None = None) -> tuple[bool, dict[str, Any]]:
    """(clean, {tables, rows_compared, mismatched_chunks, persistent, in_flux, run_id, ...}) for one
    database, for the Airflow run ``run_id`` (migration.validation.run_validation)."""
    with connect(source_conn_id, dbname=database, host=source_host, port=source_port) as source, \
            connect(target_conn_id, dbname=database, host=target_host, port=target_port) as target:
        result = validation.run_validation(source, target, schemas=schemas, control_schema=control_schema,
                                           validation_id=validation_id, run_id=run_id, chunk_rows=chunk_rows,
                                           max_rechecks=max_rechecks, slot_name=slot_name, cdc_wait_s=cdc_wait_s)
    result["database"] = database
    return result["clean"], result


def drift_by_database(*, source_conn_id: str, target_conn_id: str, databases: Sequence[str], schemas: Sequence[str],
                      target_host: str | None = None, target_port: int | None = None) -> dict[str, list[str]]:
    """{database: differences} (migration.drift.schema_drift) for the gate and the guardrail re-check."""
    schemas = drift.drift_schemas(schemas)
    found = {}
    for database in databases:
        with connect(source_conn_id, dbname=database) as source, \
                connect(target_conn_id, dbname=database, host=target_host, port=target_port) as target:
            found[database] = drift.schema_drift(source, target, schemas)
    return found
