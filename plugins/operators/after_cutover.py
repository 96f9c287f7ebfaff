"""A completed cutover as the run's tasks see it.

- ``AlreadyCutOverCheck``: the ``pre_execute`` hook the DAG gives every task (through ``default_args``). For
  the tasks that lead up to the cutover it reads the run's cutover journal first; once the target is open
  the task is skipped, saying "already cut over". Clearing such a task after the cutover (Airflow then also
  clears its setup and teardowns) changes nothing, and the run stays a success.
- ``DatabaseMovedOperator``: one per database of the YAML, after the cutover; its outlet is that database's
  Asset, so a completed cutover emits one Asset event per database the run moved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from airflow.sdk import Asset, BaseHook, BaseOperator, Context
from airflow.sdk.exceptions import AirflowException, AirflowSkipException

from connections.postgres import connect
from dag_phases.task_ids import VALIDATE_RUN, WAIT_CLONE_AVAILABLE
from migration.cutover_state import CompletedCutover, completed_cutover, moved_asset_uri
from migration.endpoints import endpoint_override


def journal_endpoint(context: Context, *, on_aws: bool) -> tuple[bool, str | None, int | None]:
    """(known, host, port) of the target that holds the run's journal. On AWS the target's endpoint is known
    only once ``wait_clone_available`` returned it in this run; locally it is the target connection's own."""
    if not on_aws:
        return True, None, None
    endpoint = context["ti"].xcom_pull(task_ids=WAIT_CLONE_AVAILABLE)
    if not isinstance(endpoint, dict) or not endpoint.get("host"):
        return False, None, None
    host, port = endpoint_override(endpoint.get("host"), endpoint.get("port"))
    return True, host, port


def run_databases(context: Context) -> list[str]:
    """The run's databases as `validate_run` accepted them (the journal lives in the first one)."""
    databases = context["ti"].xcom_pull(task_ids=VALIDATE_RUN, key="databases")
    return list(databases or [])


def find_completed_cutover(context: Context, *, migration_id: str, target_conn_id: str, control_schema: str,
                           on_aws: bool, log: Any) -> CompletedCutover | None:
    """This run's completed cutover from its journal, or None when there is none or no target to ask yet."""
    databases = run_databases(context)
    known, host, port = journal_endpoint(context, on_aws=on_aws)
    if not databases or not known:
        log.info("Cutover state: no target endpoint in this run yet (%s has no result); no completed cutover "
                 "is known", WAIT_CLONE_AVAILABLE if databases else VALIDATE_RUN)
        return None
    try:
        conn = connect(target_conn_id, dbname=databases[0], host=host, port=port)
    except psycopg.OperationalError as exc:
        # Not there yet (before the clone) or without the database: nothing can have been cut over there.
        log.info("Cutover state: the target does not answer (%s); no completed cutover",
                 str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        return None
    with conn:
        return completed_cutover(conn, control_schema=control_schema, migration_id=migration_id,
                                 run_id=context["run_id"])


class AlreadyCutOverCheck:
    """``pre_execute`` hook: a task in ``guarded`` does nothing once this run's cutover completed.

    The DAG builder fills ``guarded`` with the tasks that lead up to the cutover (every upstream of
    ``cutover.switch_over`` but ``validate_run``, and ``switch_over`` itself). The tasks after it (cleanup, the
    report, DMS deletions, stopping the source, the asset events) and the ``unblock_source_writes``
    teardown are the work after a cutover; they are not guarded and decide for themselves.
    """

    def __init__(self, *, migration_id: str, target_conn_id: str, control_schema: str, on_aws: bool):
        self.migration_id = migration_id
        self.target_conn_id = target_conn_id
        self.control_schema = control_schema
        self.on_aws = on_aws
        self.guarded: set[str] = set()

    def __call__(self, context: Context) -> None:
        task_id = context["ti"].task_id
        if task_id not in self.guarded:
            return
        log = context["task"].log
        done = find_completed_cutover(context, migration_id=self.migration_id, target_conn_id=self.target_conn_id,
                                      control_schema=self.control_schema, on_aws=self.on_aws, log=log)
        if done is not None:
            message = done.message(task_id)
            log.info(message)
            raise AirflowSkipException(message)


class DatabaseMovedOperator(BaseOperator):
    """Emits the Asset event "``database`` moved" (its only outlet) after a completed cutover.

    Skipped when the run does not migrate ``database`` (a run may narrow the YAML's databases). Refuses
    unless the run's cutover journal records the target open for it. The event's extra names the run and
    the target: ``{migration_id, database, run_id, target_open_at, target_host, target_port}``.
    """

    template_fields: Sequence[str] = ("run_databases",)
    ui_color = "#cfe2f3"

    def __init__(self, *, migration_id: str, database: str, run_databases: Any, target_conn_id: str,
                 control_schema: str, on_aws: bool, **kwargs: Any):
        super().__init__(outlets=[Asset(moved_asset_uri(migration_id, database))], **kwargs)
        self.migration_id = migration_id
        self.database = database
        self.run_databases = run_databases
        self.target_conn_id = target_conn_id
        self.control_schema = control_schema
        self.on_aws = on_aws

    def execute(self, context: Context) -> dict[str, Any]:
        databases = list(self.run_databases or [])
        if self.database not in databases:
            raise AirflowSkipException(f"database {self.database!r} is not among this run's databases {databases}; "
                                       "no asset event")
        done = find_completed_cutover(context, migration_id=self.migration_id, target_conn_id=self.target_conn_id,
                                      control_schema=self.control_schema, on_aws=self.on_aws, log=self.log)
        if done is None or self.database not in done.databases:
            raise AirflowException(f"database {self.database!r}: the cutover journal of run {context['run_id']} "
                                   "records no open target for it; no asset event")
        _, host, port = journal_endpoint(context, on_aws=self.on_aws)
        if host is None:
            conn = BaseHook.get_connection(self.target_conn_id)
            host, port = conn.host, conn.port
        extra = {"migration_id": self.migration_id, "database": self.database, "run_id": done.run_id,
                 "target_open_at": done.target_open_at, "target_host": host, "target_port": port}
        asset = self.outlets[0]
        context["outlet_events"][asset].extra.update(extra)
        self.log.info("Asset event %s: %s", asset.uri, extra)
        return {"uri": asset.uri, **extra}
