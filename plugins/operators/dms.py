"""DMS operators: the provider's task operators made rerun-safe, plus what the provider lacks.

Provider operators are used for the task itself (create, start, delete); this module adds a
find-first step to each so a rerun never duplicates or restarts what exists. Endpoints, the
replication instance, test_connection and table statistics are our own, all delegating to
``migration.dms`` (its modules follow these phases). Every XCom is a small dict (or the task ARN, as
the provider returns).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, ClassVar

from airflow.providers.amazon.aws.hooks.dms import DmsHook, DmsTaskWaiterStatus
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.operators.dms import (
    DmsCreateTaskOperator,
    DmsDeleteTaskOperator,
    DmsStartTaskOperator,
)
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk import BaseHook, BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from migration.dms import requests as dms_requests
from migration.dms import resources as dms_resources
from migration.endpoints import endpoint_override
from migration.lsn import LSN
from triggers.poll import PollTrigger, resolve_check


class _WaitsByPolling:
    """Create-then-wait operators: defer to PollTrigger on a ``triggers.checks`` check, or poll inline."""

    deferrable: bool
    poll_interval: float
    wait_timeout: float

    def _wait(self, check: str, kwargs: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
        done, payload = resolve_check(check)(**kwargs)
        if done:
            return {**result, **payload}
        if self.deferrable:
            self.defer(  # type: ignore[attr-defined]
                trigger=PollTrigger(check=check, kwargs=kwargs, poke_interval=self.poll_interval,
                                    timeout=self.wait_timeout),
                method_name="execute_complete",
                kwargs={"result": result},
                timeout=timedelta(seconds=self.wait_timeout),
            )
        started = time.monotonic()
        while not done:
            if time.monotonic() - started > self.wait_timeout:
                raise AirflowException(f"not done after {self.wait_timeout:.0f} s; last state: {payload}")
            time.sleep(self.poll_interval)
            done, payload = resolve_check(check)(**kwargs)
        return {**result, **payload}

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None,
                         result: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event:
            raise AirflowException("the trigger returned no event")
        if event.get("status") != "success":
            raise AirflowException(event.get("message", str(event)))
        return {**(result or {}), **(event.get("payload") or {})}


class DmsEnsureReplicationInstanceOperator(_WaitsByPolling, AwsBaseOperator[DmsHook]):
    """Reuse the configured replication instance, or find/create one by identifier; wait until available.

    Returns ``{arn, identifier, status, created}``; ``created`` is true only for an instance this
    migration created (it carries the ownership tag), and only such an instance is ever deleted.
    """

    aws_hook_class = DmsHook
    template_fields: Sequence[str] = aws_template_fields(
        "replication_instance_identifier", "replication_instance_arn", "migration_id")

    def __init__(self, *, migration_id: str, replication_instance_identifier: str,
                 replication_instance_arn: str | None = None, instance_class: str = "dms.t3.medium",
                 allocated_storage_gb: int = 50, subnet_group: str | None = None,
                 security_group_ids: Sequence[str] = (), multi_az: bool = False, engine_version: str | None = None,
                 publicly_accessible: bool = False, deferrable: bool = True, poll_interval: float = 30.0,
                 wait_timeout: float = 3600.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.migration_id = migration_id
        self.replication_instance_identifier = replication_instance_identifier
        self.replication_instance_arn = replication_instance_arn
        self.instance_class = instance_class
        self.allocated_storage_gb = allocated_storage_gb
        self.subnet_group = subnet_group
        self.security_group_ids = security_group_ids
        self.multi_az = multi_az
        self.engine_version = engine_version
        self.publicly_accessible = publicly_accessible
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout

    def execute(self, context: Context) -> dict[str, Any]:
        client = self.hook.conn
        if self.replication_instance_arn:
            result = dms_resources.reuse_replication_instance(client, self.replication_instance_arn)
        else:
            result = dms_resources.ensure_replication_instance(
                client, identifier=self.replication_instance_identifier, migration_id=self.migration_id,
                instance_class=self.instance_class, allocated_storage_gb=self.allocated_storage_gb,
                subnet_group=self.subnet_group, security_group_ids=list(self.security_group_ids or ()),
                multi_az=self.multi_az, engine_version=self.engine_version,
                publicly_accessible=self.publicly_accessible)
        self.log.info("Replication instance %s (%s), created by this migration: %s",
                      result["identifier"], result["status"], result["created"])
        return self._wait("triggers.checks:poll_dms_instance_available",
                          {"aws_conn_id": self.aws_conn_id, "region_name": self.region_name,
                           "replication_instance_arn": result["arn"]}, result)


class DmsEnsurePostgresEndpointOperator(AwsBaseOperator[DmsHook]):
    """Create a PostgreSQL source or target endpoint, or bring the existing one (same identifier) in line.

    Host, port, user and password come from ``postgres_conn_id`` at execute time (``host``/``port``
    override them for the clone, known only at run time), unless ``postgresql_settings`` names a
    Secrets Manager secret, in which case none of them is sent. The password never reaches XCom,
    logs or template fields. For a target endpoint, ``source_conn_id`` makes it first prove that the
    endpoint's host and port reach the clone, not the source (DMS would write there); nothing is
    created or changed otherwise. Returns ``{arn, identifier, created, modified}``.
    """

    aws_hook_class = DmsHook
    template_fields: Sequence[str] = aws_template_fields(
        "endpoint_identifier", "postgres_conn_id", "database", "host", "port", "postgresql_settings",
        "source_conn_id")
    template_fields_renderers: ClassVar[dict[str, str]] = {"postgresql_settings": "json"}

    def __init__(self, *, endpoint_identifier: str, endpoint_type: str, database: str,
                 postgres_conn_id: str | None = None, host: str | None = None, port: int | str | None = None,
                 postgresql_settings: dict[str, Any] | None = None, ssl_mode: str = "require",
                 engine_name: str = "postgres", migration_id: str | None = None, source_conn_id: str | None = None,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.source_conn_id = source_conn_id
        self.endpoint_identifier = endpoint_identifier
        self.endpoint_type = endpoint_type
        self.database = database
        self.postgres_conn_id = postgres_conn_id
        self.host = host
        self.port = port
        self.postgresql_settings = postgresql_settings
        self.ssl_mode = ssl_mode
        self.engine_name = engine_name
        self.migration_id = migration_id

    def execute(self, context: Context) -> dict[str, Any]:
        settings = dict(self.postgresql_settings or {})
        uses_secret = "SecretsManagerSecretId" in settings
        server = port = username = password = None
        if not uses_secret:
            if not self.postgres_conn_id:
                raise AirflowException("postgres_conn_id: needed for the endpoint's user and password "
                                       "(or configure a Secrets Manager secret)")
            conn = BaseHook.get_connection(self.postgres_conn_id)
            host, given_port = endpoint_override(self.host, self.port, port_field="port")
            server, port = host or conn.host, given_port or conn.port or 5432
            username, password = conn.login, conn.password
        if self.endpoint_type == "target" and self.source_conn_id:
            self._prove_not_source(server, port, uses_secret)
        request = dms_requests.endpoint_request(
            endpoint_identifier=self.endpoint_identifier, endpoint_type=self.endpoint_type, database=self.database,
            postgresql_settings=settings, server_name=server, port=port, username=username,
            ssl_mode=self.ssl_mode, engine_name=self.engine_name,
            tags={dms_requests.OWNER_TAG: self.migration_id} if self.migration_id else None)
        result = dms_resources.ensure_postgres_endpoint(self.hook.conn, request, password=password)
        self.log.info("%s endpoint %s: %s%s", self.endpoint_type, self.endpoint_identifier,
                      "created" if result["created"] else "exists",
                      f", updated {', '.join(result['modified'])}" if result["modified"] else "")
        return result

    def _prove_not_source(self, server: str | None, port: Any, uses_secret: bool) -> None:
        from connections.postgres import connect
        from migration.clone_guard import ensure_target_is_not_source

        if uses_secret:
            self.log.warning("The target endpoint's host comes from its Secrets Manager secret, which is not read "
                             "here; the target tasks prove on their own connections that they reach the clone")
            return
        with (connect(self.postgres_conn_id, dbname=self.database, host=server, port=int(port)) as target,
              connect(self.source_conn_id, dbname=self.database) as source):
            ensure_target_is_not_source(target, source, task=self.task_id)


class DmsTestConnectionOperator(_WaitsByPolling, AwsBaseOperator[DmsHook]):
    """Test the connection from the replication instance to an endpoint and wait for 'successful'.

    A failed test fails the task with DMS's LastFailureMessage. Returns ``{endpoint_arn, status, ...}``.
    """

    aws_hook_class = DmsHook
    template_fields: Sequence[str] = aws_template_fields("replication_instance_arn", "endpoint_arn")

    def __init__(self, *, replication_instance_arn: str, endpoint_arn: str, deferrable: bool = True,
                 poll_interval: float = 10.0, wait_timeout: float = 900.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.replication_instance_arn = replication_instance_arn
        self.endpoint_arn = endpoint_arn
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout

    def execute(self, context: Context) -> dict[str, Any]:
        dms_resources.start_connection_test(self.hook.conn, replication_instance_arn=self.replication_instance_arn,
                                            endpoint_arn=self.endpoint_arn)
        return self._wait("triggers.checks:poll_dms_connection_tested",
                          {"aws_conn_id": self.aws_conn_id, "region_name": self.region_name,
                           "replication_instance_arn": self.replication_instance_arn,
                           "endpoint_arn": self.endpoint_arn}, {"endpoint_arn": self.endpoint_arn})


class DmsCreateCdcTaskOperator(DmsCreateTaskOperator):
    """The provider's DmsCreateTaskOperator for a CDC-only task, finding an existing task first.

    ``cdc_start_position`` (the resolved start LSN) and ``replication_task_settings`` (a dict) go
    into ``create_task_kwargs`` as CdcStartPosition and ReplicationTaskSettings. A task with the same
    identifier is reused when it joins the same endpoints and instance
    (``migration.dms.resources.existing_cdc_task``). Returns the task ARN.
    """

    template_fields: Sequence[str] = tuple(sorted(
        {*DmsCreateTaskOperator.template_fields, "cdc_start_position", "replication_task_settings"}))
    template_fields_renderers: ClassVar[dict[str, str]] = {
        **DmsCreateTaskOperator.template_fields_renderers, "replication_task_settings": "json"}

    def __init__(self, *, replication_task_id: str, source_endpoint_arn: str, target_endpoint_arn: str,
                 replication_instance_arn: str, table_mappings: dict, cdc_start_position: str,
                 replication_task_settings: dict[str, Any], **kwargs: Any):
        kwargs.pop("migration_type", None)
        super().__init__(replication_task_id=replication_task_id, source_endpoint_arn=source_endpoint_arn,
                         target_endpoint_arn=target_endpoint_arn, replication_instance_arn=replication_instance_arn,
                         table_mappings=table_mappings, migration_type="cdc", **kwargs)
        self.cdc_start_position = cdc_start_position
        self.replication_task_settings = replication_task_settings

    def execute(self, context: Context) -> str:
        start = LSN.parse(self.cdc_start_position, field="cdc_start_position")
        existing = dms_resources.existing_cdc_task(
            self.hook.conn, identifier=self.replication_task_id, source_endpoint_arn=self.source_endpoint_arn,
            target_endpoint_arn=self.target_endpoint_arn, replication_instance_arn=self.replication_instance_arn)
        if existing:
            if existing.wait_until_ready:
                self.hook.wait_for_task_status(existing.arn, DmsTaskWaiterStatus.READY)
            self.log.info("Replication task %s exists (%s); not creating it again", self.replication_task_id,
                          existing.status)
            return existing.arn
        self.create_task_kwargs = {
            **self.create_task_kwargs,
            "CdcStartPosition": str(start),
            "ReplicationTaskSettings": dms_requests.dumps_settings(self.replication_task_settings),
        }
        return super().execute(context)


class DmsStartCdcTaskOperator(DmsStartTaskOperator):
    """The provider's DmsStartTaskOperator, started once from the resolved LSN and never replayed.

    A ready task starts with start-replication and ``{"CdcStartPosition": lsn}``; a running or starting
    task is left alone; a stopped or failed one that ran before resumes from DMS's own checkpoint
    (resume-processing), since starting it from the LSN again would replay changes the target already
    has; one that failed on its first start has no checkpoint and starts again at its original
    CdcStartPosition (``migration.dms.resources.cdc_start``). Returns ``{arn, start_type, cdc_start_position,
    status_before}``.
    """

    template_fields: Sequence[str] = tuple(sorted({*DmsStartTaskOperator.template_fields, "cdc_start_position"}))

    def __init__(self, *, replication_task_arn: str, cdc_start_position: str, **kwargs: Any):
        kwargs.pop("start_replication_task_type", None)
        super().__init__(replication_task_arn=replication_task_arn,
                         start_replication_task_type="start-replication", **kwargs)
        self.cdc_start_position = cdc_start_position

    def execute(self, context: Context) -> dict[str, Any]:
        start = LSN.parse(self.cdc_start_position, field="cdc_start_position")
        plan = dms_resources.cdc_start(self.hook.conn, self.replication_task_arn, start,
                                       start_kwargs=self.start_task_kwargs)
        result = {"arn": self.replication_task_arn, "status_before": plan.status_before,
                  "cdc_start_position": str(start), "start_type": plan.start_type}
        if plan.start_type is None:
            self.log.info("Replication task is already %s; not starting it again", plan.status_before)
            return result
        self.log.info("Replication task %s: %s (%s)", self.replication_task_arn, plan.start_type, plan.reason)
        self.start_replication_task_type = plan.start_type
        self.start_task_kwargs = plan.start_kwargs
        super().execute(context)
        return result


class DmsCleanupScopeOperator(BaseOperator):
    """Decide which DMS tasks and endpoints this run's cleanup deletes (``migration.dms.resources.cleanup_scope``).

    Only the run's databases (``plan``, validate_run's output), and only when the cutover task
    (``cutover_task_id``) completed. Returns the replication task identifiers (what the task deletes
    are mapped over); pushes ``endpoint_identifiers`` and the whole decision under ``scope``
    (``{databases, replication_task_ids, endpoint_identifiers, reason}``).
    """

    template_fields: Sequence[str] = ("plan",)

    def __init__(self, *, plan: Any, cutover_task_id: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.plan = plan
        self.cutover_task_id = cutover_task_id

    def execute(self, context: Context) -> list[str]:
        from operators.report import cutover_timeline

        ti = context["ti"]
        scope = dms_resources.cleanup_scope(self.plan, cutover_timeline(ti, self.cutover_task_id))
        self.log.info("DMS cleanup: %s", scope["reason"])
        ti.xcom_push(key="endpoint_identifiers", value=scope["endpoint_identifiers"])
        ti.xcom_push(key="scope", value=scope)
        return scope["replication_task_ids"]


class DmsDeleteCdcTaskOperator(DmsDeleteTaskOperator):
    """The provider's DmsDeleteTaskOperator, by identifier: absent is fine, a running task is stopped first
    (``migration.dms.resources.prepare_task_deletion``).

    Returns ``{identifier, arn, deleted}``.
    """

    template_fields: Sequence[str] = tuple(sorted({*DmsDeleteTaskOperator.template_fields, "replication_task_id"}))

    def __init__(self, *, replication_task_id: str, stop_timeout: float = 600.0, stop_poll_interval: float = 5.0,
                 **kwargs: Any):
        super().__init__(**kwargs)
        self.replication_task_id = replication_task_id
        self.stop_timeout = stop_timeout
        self.stop_poll_interval = stop_poll_interval

    def execute(self, context: Context) -> dict[str, Any]:
        arn = dms_resources.prepare_task_deletion(self.hook.conn, self.replication_task_id,
                                                  stop_timeout=self.stop_timeout,
                                                  stop_poll_interval=self.stop_poll_interval)
        if arn is None:
            self.log.info("Replication task %s does not exist; nothing to delete", self.replication_task_id)
            return {"identifier": self.replication_task_id, "arn": None, "deleted": False}
        self.replication_task_arn = arn
        super().execute(context)
        return {"identifier": self.replication_task_id, "arn": arn, "deleted": True}


class DmsDeleteEndpointsOperator(AwsBaseOperator[DmsHook]):
    """Delete endpoints by identifier (absent ones are skipped) and wait until they are gone."""

    aws_hook_class = DmsHook
    template_fields: Sequence[str] = aws_template_fields("endpoint_identifiers")

    def __init__(self, *, endpoint_identifiers: Sequence[str], **kwargs: Any):
        super().__init__(**kwargs)
        self.endpoint_identifiers = endpoint_identifiers

    def execute(self, context: Context) -> dict[str, Any]:
        client = self.hook.conn
        deleted, absent = [], []
        for identifier in list(self.endpoint_identifiers):
            (deleted if dms_resources.delete_endpoint_if_exists(client, identifier) else absent).append(identifier)
        if deleted:
            client.get_waiter("endpoint_deleted").wait(
                Filters=[{"Name": "endpoint-id", "Values": deleted}], WaiterConfig={"Delay": 5, "MaxAttempts": 60})
        return {"deleted": deleted, "absent": absent}


class DmsDeleteReplicationInstanceOperator(_WaitsByPolling, AwsBaseOperator[DmsHook]):
    """Delete the replication instance only if this migration created it (ownership tag); wait until gone.

    Returns ``{identifier, deleted, reason}``.
    """

    aws_hook_class = DmsHook
    template_fields: Sequence[str] = aws_template_fields("replication_instance_identifier", "migration_id")

    def __init__(self, *, replication_instance_identifier: str, migration_id: str, deferrable: bool = True,
                 poll_interval: float = 30.0, wait_timeout: float = 3600.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.replication_instance_identifier = replication_instance_identifier
        self.migration_id = migration_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout

    def execute(self, context: Context) -> dict[str, Any]:
        result = dms_resources.delete_replication_instance_if_owned(
            self.hook.conn, identifier=self.replication_instance_identifier, migration_id=self.migration_id)
        self.log.info("Replication instance %s: %s", self.replication_instance_identifier, result["reason"])
        if not result["deleted"]:
            return result
        return self._wait("triggers.checks:poll_dms_instance_deleted",
                          {"aws_conn_id": self.aws_conn_id, "region_name": self.region_name,
                           "replication_instance_identifier": self.replication_instance_identifier}, result)
