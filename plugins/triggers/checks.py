"""Poll checks: the entry points that open connections from Airflow connection ids.

``PollTrigger`` and ``DeferrablePollSensor`` call these by import path (``"triggers.checks:poll_native_cdc_lag"``).
Each one opens its connections and hands them to one ``migration`` function, so ``plugins/migration``
never imports Airflow. A check returns ``(done, payload)``, the payload a small JSON-able dict.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from connections.aws import aws_client
from connections.postgres import connect, conninfo_for
from migration import drift, local_clone, native_cdc, validation
from migration.aws import common as aws_common
from migration.aws import snapshot as aws_snapshot
from migration.dms import monitoring as dms_monitoring
from migration.dms import resources as dms_resources

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# PostgreSQL side: local clone, native CDC, native validation, schema drift
# ---------------------------------------------------------------------------------------------

def poll_clone_available(*, conn_id: str, dbname: str | None = None, host: str | None = None,
                         port: int | None = None) -> tuple[bool, dict[str, Any]]:
    """The local clone, reached through the target connection at ``host``/``port``, accepts connections
    and has finished recovery."""
    done, facts = local_clone.clone_available(conninfo_for(conn_id, dbname=dbname, host=host, port=port))
    return done, {"host": host, "port": port, "dbname": dbname, **facts}


def poll_native_cdc_lag(*, source_conn_id: str, target_conn_id: str, database: str, slot_name: str,
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


def poll_native_validation(*, source_conn_id: str, target_conn_id: str, database: str, schemas: Sequence[str],
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


# ---------------------------------------------------------------------------------------------
# AWS side: RDS clusters, instances and snapshots
# ---------------------------------------------------------------------------------------------

def poll_rds_db_available(*, aws_conn_id: str, db_type: str, identifier: str,
                          writer_instance_identifier: str | None = None,
                          require_parameters_in_sync: bool = False) -> tuple[bool, dict[str, Any]]:
    """A DB cluster (and its writer) or DB instance is available (migration.aws.common.db_available),
    through an RDS client for the Airflow connection ``aws_conn_id``."""
    return aws_common.db_available(aws_client(aws_conn_id, "rds"), db_type=db_type, identifier=identifier,
                                   writer_instance_identifier=writer_instance_identifier,
                                   require_parameters_in_sync=require_parameters_in_sync)


def poll_rds_snapshot_available(*, aws_conn_id: str, snapshot_identifier: str) -> tuple[bool, dict[str, Any]]:
    """A DB snapshot is available (migration.aws.snapshot.snapshot_available)."""
    return aws_snapshot.snapshot_available(aws_client(aws_conn_id, "rds"), snapshot_identifier=snapshot_identifier)


# ---------------------------------------------------------------------------------------------
# DMS: replication instance, connection tests, CDC latency, validation (migration.dms)
# ---------------------------------------------------------------------------------------------

def poll_dms_instance_available(*, aws_conn_id: str | None, replication_instance_arn: str,
                                region_name: str | None = None) -> tuple[bool, dict[str, Any]]:
    """The replication instance is 'available' (fails at once on a state it cannot leave)."""
    return dms_resources.replication_instance_state(aws_client(aws_conn_id, "dms", region_name=region_name),
                                                    replication_instance_arn)


def poll_dms_instance_deleted(*, aws_conn_id: str | None, replication_instance_identifier: str,
                              region_name: str | None = None) -> tuple[bool, dict[str, Any]]:
    """The replication instance is gone."""
    instance = dms_resources.find_replication_instance(aws_client(aws_conn_id, "dms", region_name=region_name),
                                                       identifier=replication_instance_identifier)
    status = instance.get("ReplicationInstanceStatus") if instance else "deleted"
    return instance is None, {"identifier": replication_instance_identifier, "status": status}


def poll_dms_connection_tested(*, aws_conn_id: str | None, replication_instance_arn: str, endpoint_arn: str,
                               region_name: str | None = None) -> tuple[bool, dict[str, Any]]:
    """The connection test from the instance to the endpoint succeeded (fails with DMS's message)."""
    return dms_resources.connection_test_state(aws_client(aws_conn_id, "dms", region_name=region_name),
                                               replication_instance_arn=replication_instance_arn,
                                               endpoint_arn=endpoint_arn)


def poll_dms_cdc_latency(*, aws_conn_id: str | None, replication_task_arn: str, replication_instance_id: str,
                         source_conn_id: str, database: str, slot_name: str, max_latency_seconds: float = 5,
                         consecutive_datapoints: int = 3, max_slot_lag_bytes: int = 16 * 1024 * 1024,
                         period_seconds: int = 60, lookback_seconds: int = 900, region_name: str | None = None
                         ) -> tuple[bool, dict[str, Any]]:
    """CDC latency and the source slot (migration.dms.monitoring.cdc_latency_state)."""
    with connect(source_conn_id, dbname=database) as source_conn:
        return dms_monitoring.cdc_latency_state(
            dms=aws_client(aws_conn_id, "dms", region_name=region_name),
            cloudwatch=aws_client(aws_conn_id, "cloudwatch", region_name=region_name),
            source_conn=source_conn, replication_task_arn=replication_task_arn,
            replication_instance_id=replication_instance_id, slot_name=slot_name,
            max_latency_seconds=max_latency_seconds, consecutive_datapoints=consecutive_datapoints,
            max_slot_lag_bytes=max_slot_lag_bytes, now=datetime.now(UTC),
            period_seconds=period_seconds, lookback_seconds=lookback_seconds,
        )


def poll_dms_validation(*, aws_conn_id: str | None, replication_task_arn: str, target_conn_id: str, database: str,
                        control_schema: str, target_host: str | None = None, target_port: int | str | None = None,
                        expected_tables: list[str] | None = None, max_reported: int = 20,
                        region_name: str | None = None, source_conn_id: str | None = None,
                        slot_name: str | None = None) -> tuple[bool, dict[str, Any]]:
    """DMS validation (migration.dms.monitoring.validation_state); the target reached at ``target_host``;
    with ``source_conn_id`` and the task's ``slot_name`` the rows DMS recorded are compared again."""
    port = int(target_port) if target_port not in (None, "") else None
    with contextlib.ExitStack() as stack:
        target_conn = stack.enter_context(connect(target_conn_id, dbname=database, host=target_host or None,
                                                  port=port))
        source_conn = stack.enter_context(connect(source_conn_id, dbname=database)) if source_conn_id else None
        return dms_monitoring.validation_state(
            dms=aws_client(aws_conn_id, "dms", region_name=region_name), target_conn=target_conn,
            replication_task_arn=replication_task_arn, control_schema=control_schema,
            expected_tables=expected_tables, max_reported=max_reported, source_conn=source_conn,
            slot_name=slot_name, database=database)
