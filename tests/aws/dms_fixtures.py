"""A moto 5.2.5 DMS extension that behaves the way DMS documents, for the DMS engine's tests.

moto server runs in this process (a thread), so its DMS response class is patched here, for one
test at a time (monkeypatch), and all state lives in moto's own backends (reset per test).
Requests still go through botocore (request validation included) and moto's HTTP layer.

Stand-ins, each closing a measured moto gap:

- Task status. moto leaves a task 'creating' forever (DmsCreateTaskOperator then waits ~15 min and
  fails) and jumps start/stop straight to running/stopped. Here a task moves the way DMS documents:
  creating -> ready -> starting -> running -> stopping -> stopped, and deleting -> gone, one step per
  ``describes_per_step`` describe calls. start-replication is refused for a task that ran before,
  start/stop/delete are refused from the wrong state (InvalidResourceStateFault), as DMS does.
- Checkpoints. A task that reached 'running' has a RecoveryCheckpoint and ReplicationTaskStats, as
  DMS reports them; resume-processing is refused for a task that never ran (DMS: "only available
  for previously executed tasks"), e.g. one that failed while starting (``fail_task`` on 'starting').
- Task ARNs end in a random resource id (as DMS's do), not the identifier, so code that needs the
  resource id (CloudWatch dimension, TASK_NAME) cannot get away with the identifier.
- CdcStartPosition (create and start) is recorded and returned; moto drops it. StartReplicationTaskType
  is recorded. LastFailureMessage/StopReason are returned for a task failed with ``fail_task``.
- describe_table_statistics (not in moto) answers from ``set_table_statistics``, with paging.
- Describe calls whose filters match nothing raise ResourceNotFoundFault, as DMS does (moto returns an
  empty list, so DmsDeleteTaskOperator's 'deleted' waiter never succeeds).
- Endpoints are 'active' once created (moto: 'creating' forever); a second endpoint with the same
  identifier is refused (moto silently replaces it); modify_endpoint (not in moto) is implemented;
  an endpoint or instance still used by a task cannot be deleted.
- test_connection: a second test for the same pair crashes moto; here it restarts the test (and is
  refused while one runs). A test is 'testing' for ``connection_describes_per_step``
  describe_connections calls, then 'successful', or 'failed' with a message for an endpoint named in
  ``fail_connections_to``. describe_connections applies all its filters (moto: only the last).
- Replication instances go creating -> available after ``instance_describes_until_available`` describe
  calls (moto's own state manager, set to manual progression).
- Every DMS request is recorded (account, action, parameters as sent over the wire) in ``requests``.
"""

from __future__ import annotations

import json
import random
import string
from datetime import datetime
from typing import Any

import pytest
from moto.core.responses import BaseResponse
from moto.core.utils import utcnow
from moto.dms.exceptions import (
    InvalidParameterCombinationException,
    InvalidResourceStateFault,
    ResourceAlreadyExistsFault,
    ResourceNotFoundFault,
)
from moto.dms.models import dms_backends
from moto.dms.responses import DatabaseMigrationServiceResponse
from moto.dms.utils import filter_tasks
from moto.moto_api import state_manager

REGION = "us-east-1"
NEXT_STATUS = {"creating": "ready", "starting": "running", "stopping": "stopped", "deleting": None}


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def _resource_id() -> str:
    return "".join(random.choice(string.ascii_uppercase + string.digits) for _ in range(26))


class DocumentedTask:
    """A replication task with the fields DMS returns and its documented status machine.

    It carries the attributes moto's task filters read (arn, id, migration_type, endpoint and instance ARNs).
    """

    def __init__(self, *, resource_id: str, identifier: str, migration_type: str, replication_instance_arn: str,
                 source_endpoint_arn: str, target_endpoint_arn: str, table_mappings: str,
                 replication_task_settings: str | None, cdc_start_position: str | None, account_id: str,
                 region_name: str):
        self.arn = f"arn:aws:dms:{region_name}:{account_id}:task:{resource_id}"
        self.id = identifier
        self.migration_type = migration_type
        self.replication_instance_arn = replication_instance_arn
        self.source_endpoint_arn = source_endpoint_arn
        self.target_endpoint_arn = target_endpoint_arn
        self.table_mappings = table_mappings
        self.replication_task_settings = replication_task_settings
        self.cdc_start_position = cdc_start_position
        self.status = "creating"
        self.created_at = utcnow()
        self.started_at: datetime | None = None
        self.start_type: str | None = None
        self.has_run = False  # reached 'running' once: DMS then keeps a RecoveryCheckpoint to resume from
        self.recovery_checkpoint: str | None = None
        self.elapsed_ms = 0
        self.last_failure_message: str | None = None
        self.stop_reason: str | None = None
        self.describes = 0

    def to_dict(self, with_settings: bool = True) -> dict[str, Any]:
        data = {
            "ReplicationTaskIdentifier": self.id,
            "ReplicationTaskArn": self.arn,
            "SourceEndpointArn": self.source_endpoint_arn,
            "TargetEndpointArn": self.target_endpoint_arn,
            "ReplicationInstanceArn": self.replication_instance_arn,
            "MigrationType": self.migration_type,
            "TableMappings": self.table_mappings,
            "ReplicationTaskSettings": self.replication_task_settings if with_settings else None,
            "Status": self.status,
            "CdcStartPosition": self.cdc_start_position,
            "LastFailureMessage": self.last_failure_message,
            "StopReason": self.stop_reason,
            "ReplicationTaskCreationDate": self.created_at.isoformat(),
            "ReplicationTaskStartDate": self.started_at.isoformat() if self.started_at else None,
            "RecoveryCheckpoint": self.recovery_checkpoint,
            "ReplicationTaskStats": {
                "FullLoadProgressPercent": 0, "ElapsedTimeMillis": self.elapsed_ms, "TablesLoaded": 0,
                "TablesLoading": 0, "TablesQueued": 0, "TablesErrored": 0,
                "StartDate": self.started_at.isoformat() if self.started_at else None,
            } if self.started_at else None,
        }
        return _drop_none(data)


class DmsMotoExtension:
    """Handle on the extension for a test: recorded requests, task control, table statistics."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.table_stats: dict[str, list[dict[str, Any]]] = {}
        self.failing_endpoints: dict[str, str] = {}
        self.connection_describes: dict[tuple[str, str], int] = {}
        self.describes_per_step = 1
        self.connection_describes_per_step = 1

    # -- for tests
    def calls(self, action: str, account: str | None = None) -> list[dict[str, Any]]:
        return [r["params"] for r in self.requests
                if r["action"] == action and (account is None or r["account"] == account)]

    def backend(self, account: str) -> Any:
        return dms_backends[account][REGION]

    def task(self, arn: str) -> DocumentedTask:
        return self.backend(arn.split(":")[4]).replication_tasks[arn]

    def set_table_statistics(self, task_arn: str, tables: list[dict[str, Any]]) -> None:
        self.table_stats[task_arn] = tables

    def fail_task(self, arn: str, message: str, stop_reason: str = "FATAL_ERROR") -> None:
        task = self.task(arn)
        task.status, task.last_failure_message, task.stop_reason = "failed", message, stop_reason

    def fail_connections_to(self, endpoint_arn: str, message: str) -> None:
        self.failing_endpoints[endpoint_arn] = message

    # -- the patched response methods (bound to moto's response object as ``resp``)
    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        ext = self
        original_call_action = BaseResponse.call_action
        original_describe_instances = DatabaseMigrationServiceResponse.describe_replication_instances
        original_create_endpoint = DatabaseMigrationServiceResponse.create_endpoint

        def params(resp: Any) -> dict[str, Any]:
            return json.loads(resp.body) if resp.body else {}

        def call_action(resp: Any) -> Any:
            try:
                action = resp._get_action()
                ext.requests.append({"account": resp.current_account, "action": action, "params": params(resp)})
            except Exception:  # noqa: BLE001 - recording must never change moto's answer
                pass
            return original_call_action(resp)

        def backend(resp: Any) -> Any:
            return dms_backends[resp.current_account][resp.region]

        def get_task(resp: Any, arn: str) -> DocumentedTask:
            task = backend(resp).replication_tasks.get(arn)
            if task is None:
                raise ResourceNotFoundFault("Replication task could not be found.")
            return task

        def create_replication_task(resp: Any) -> str:
            p = params(resp)
            be = backend(resp)
            if any(t.id == p["ReplicationTaskIdentifier"] for t in be.replication_tasks.values()):
                raise ResourceAlreadyExistsFault("The resource you are attempting to create already exists.")
            task = DocumentedTask(
                resource_id=p.get("ResourceIdentifier") or _resource_id(),
                cdc_start_position=p.get("CdcStartPosition"),
                identifier=p["ReplicationTaskIdentifier"],
                source_endpoint_arn=p["SourceEndpointArn"], target_endpoint_arn=p["TargetEndpointArn"],
                replication_instance_arn=p["ReplicationInstanceArn"], migration_type=p["MigrationType"],
                table_mappings=p["TableMappings"], replication_task_settings=p.get("ReplicationTaskSettings"),
                account_id=resp.current_account, region_name=resp.region)
            be.replication_tasks[task.arn] = task
            return json.dumps({"ReplicationTask": task.to_dict()})

        def describe_replication_tasks(resp: Any) -> str:
            p = params(resp)
            be = backend(resp)
            matched = filter_tasks(list(be.replication_tasks.values()), p.get("Filters", []))
            shown = []
            for task in matched:
                task.describes += 1
                if task.status in NEXT_STATUS and task.describes >= ext.describes_per_step:
                    task.describes = 0
                    nxt = NEXT_STATUS[task.status]
                    if nxt is None:
                        be.replication_tasks.pop(task.arn, None)
                        continue
                    task.status = nxt
                    if nxt == "running" and not task.has_run:
                        # Once it runs, DMS checkpoints CDC progress: a later resume-processing continues there.
                        task.has_run, task.elapsed_ms = True, 1000
                        task.recovery_checkpoint = (f"checkpoint:V1#1#{task.cdc_start_position or '0/0'}:0#0#0#*#0#0")
                shown.append(task)
            if p.get("Filters") and not shown:
                raise ResourceNotFoundFault("No Tasks found matching provided filters")
            return json.dumps({"ReplicationTasks": [t.to_dict(not p.get("WithoutSettings")) for t in shown]})

        def start_replication_task(resp: Any) -> str:
            p = params(resp)
            task = get_task(resp, p["ReplicationTaskArn"])
            kind = p["StartReplicationTaskType"]
            if task.status not in ("ready", "stopped", "failed"):
                raise InvalidResourceStateFault(f"Replication task is {task.status}; it cannot be started")
            if kind == "start-replication" and task.has_run:
                raise InvalidParameterCombinationException(
                    "Start Type : START_REPLICATION, valid only for tasks running for the first time")
            if kind == "resume-processing" and not task.has_run:
                # "resume-processing is only available for previously executed tasks": no checkpoint yet.
                raise InvalidParameterCombinationException(
                    "Start Type : RESUME_PROCESSING, the task has no checkpoint to resume from")
            if p.get("CdcStartPosition"):
                task.cdc_start_position = p["CdcStartPosition"]
            task.start_type, task.status = kind, "starting"
            task.started_at = utcnow()
            task.last_failure_message = task.stop_reason = None
            task.describes = 0
            return json.dumps({"ReplicationTask": task.to_dict()})

        def stop_replication_task(resp: Any) -> str:
            task = get_task(resp, params(resp)["ReplicationTaskArn"])
            if task.status != "running":
                raise InvalidResourceStateFault(f"Replication task is {task.status}, not running")
            task.status, task.stop_reason, task.describes = "stopping", "STOPPED_BY_USER", 0
            return json.dumps({"ReplicationTask": task.to_dict()})

        def delete_replication_task(resp: Any) -> str:
            task = get_task(resp, params(resp)["ReplicationTaskArn"])
            if task.status in ("running", "starting", "stopping", "creating"):
                raise InvalidResourceStateFault(f"Replication task is {task.status}; stop it before deleting")
            task.status, task.describes = "deleting", 0
            return json.dumps({"ReplicationTask": task.to_dict()})

        def describe_table_statistics(resp: Any) -> str:
            p = params(resp)
            arn = p["ReplicationTaskArn"]
            get_task(resp, arn)
            tables = list(ext.table_stats.get(arn, []))
            for f in p.get("Filters", []):
                key = {"schema-name": "SchemaName", "table-name": "TableName", "table-state": "TableState"}[f["Name"]]
                tables = [t for t in tables if t.get(key) in f["Values"]]
            start = int(p.get("Marker") or 0)
            size = int(p.get("MaxRecords") or 100)
            page = tables[start:start + size]
            body: dict[str, Any] = {"ReplicationTaskArn": arn, "TableStatistics": page}
            if start + size < len(tables):
                body["Marker"] = str(start + size)
            return json.dumps(body)

        def create_endpoint(resp: Any) -> Any:
            p = params(resp)
            if p.get("EndpointIdentifier") in backend(resp).endpoints:
                raise ResourceAlreadyExistsFault("The resource you are attempting to create already exists.")
            answer = original_create_endpoint(resp)
            backend(resp).endpoints[p["EndpointIdentifier"]].status = "active"
            body = json.loads(answer)
            body["Endpoint"]["Status"] = "active"
            return json.dumps(body)

        def describe_endpoints(resp: Any) -> str:
            p = params(resp)
            found = backend(resp).describe_endpoints(filters=p.get("Filters", []), max_records=None, marker=None)
            if p.get("Filters") and not found:
                raise ResourceNotFoundFault("No Endpoints found matching provided filters")
            return json.dumps({"Endpoints": [_drop_none(e.to_dict()) for e in found]})

        def modify_endpoint(resp: Any) -> str:
            p = params(resp)
            endpoint = next((e for e in backend(resp).endpoints.values() if e.endpoint_arn == p["EndpointArn"]), None)
            if endpoint is None:
                raise ResourceNotFoundFault("Endpoint could not be found.")
            fields = {"ServerName": "server_name", "Port": "port", "DatabaseName": "database_name",
                      "Username": "username", "Password": "password", "SslMode": "ssl_mode",
                      "PostgreSQLSettings": "postgre_sql_settings"}
            for key, attr in fields.items():
                if key in p:
                    setattr(endpoint, attr, p[key])
            return json.dumps({"Endpoint": _drop_none(endpoint.to_dict())})

        def delete_endpoint(resp: Any) -> Any:
            arn = params(resp)["EndpointArn"]
            if any(arn in (t.source_endpoint_arn, t.target_endpoint_arn)
                   for t in backend(resp).replication_tasks.values()):
                raise InvalidResourceStateFault("Endpoint is in use by a replication task")
            endpoint = backend(resp).delete_endpoint(endpoint_arn=arn)
            return json.dumps({"Endpoint": _drop_none(endpoint.to_dict())})

        def describe_replication_instances(resp: Any) -> Any:
            answer = original_describe_instances(resp)
            if params(resp).get("Filters") and not json.loads(answer)["ReplicationInstances"]:
                raise ResourceNotFoundFault("No replication instance found matching provided filters")
            return answer

        def delete_replication_instance(resp: Any) -> str:
            arn = params(resp)["ReplicationInstanceArn"]
            if any(t.replication_instance_arn == arn for t in backend(resp).replication_tasks.values()):
                raise InvalidResourceStateFault("Replication instance is in use by a replication task")
            instance = backend(resp).delete_replication_instance(replication_instance_arn=arn)
            return json.dumps({"ReplicationInstance": _drop_none(instance.to_dict())})

        def connections(resp: Any) -> list[dict[str, Any]]:
            be = backend(resp)
            if not hasattr(be, "documented_connections"):
                be.documented_connections = []
            return be.documented_connections

        def test_connection(resp: Any) -> str:
            p = params(resp)
            be = backend(resp)
            instance = be.replication_instances.get(p["ReplicationInstanceArn"])
            endpoint = next((e for e in be.endpoints.values() if e.endpoint_arn == p["EndpointArn"]), None)
            if instance is None or endpoint is None:
                raise ResourceNotFoundFault("Replication instance or endpoint could not be found.")
            conns = connections(resp)
            conn = next((c for c in conns if c["EndpointArn"] == endpoint.endpoint_arn
                         and c["ReplicationInstanceArn"] == instance.arn), None)
            if conn is None:
                conn = {"ReplicationInstanceArn": instance.arn, "EndpointArn": endpoint.endpoint_arn,
                        "EndpointIdentifier": endpoint.endpoint_identifier,
                        "ReplicationInstanceIdentifier": instance.id}
                conns.append(conn)
            elif conn["Status"] == "testing":
                raise InvalidResourceStateFault("A connection test for this pair is already running")
            conn.update({"Status": "testing", "LastFailureMessage": ""})
            ext.connection_describes[(conn["ReplicationInstanceArn"], conn["EndpointArn"])] = 0
            return json.dumps({"Connection": conn})

        def describe_connections(resp: Any) -> str:
            p = params(resp)
            keys = {"endpoint-arn": "EndpointArn", "replication-instance-arn": "ReplicationInstanceArn"}
            found = connections(resp)
            for f in p.get("Filters", []):
                found = [c for c in found if c[keys[f["Name"]]] in f["Values"]]
            for conn in found:
                pair = (conn["ReplicationInstanceArn"], conn["EndpointArn"])
                ext.connection_describes[pair] = ext.connection_describes.get(pair, 0) + 1
                if conn["Status"] == "testing" and ext.connection_describes[pair] >= ext.connection_describes_per_step:
                    message = ext.failing_endpoints.get(conn["EndpointArn"])
                    conn.update({"Status": "failed", "LastFailureMessage": message} if message
                                else {"Status": "successful"})
            if p.get("Filters") and not found:
                raise ResourceNotFoundFault("No connections found matching provided filters")
            return json.dumps({"Connections": found})

        monkeypatch.setattr(DatabaseMigrationServiceResponse, "call_action", call_action)
        for fn in (create_replication_task, describe_replication_tasks, start_replication_task,
                   stop_replication_task, delete_replication_task, describe_table_statistics, create_endpoint,
                   describe_endpoints, modify_endpoint, delete_endpoint, describe_replication_instances,
                   delete_replication_instance, test_connection, describe_connections):
            monkeypatch.setattr(DatabaseMigrationServiceResponse, fn.__name__, fn, raising=False)

    def instance_describes_until_available(self, times: int) -> None:
        state_manager.set_transition("dms::replicationinstance", {"progression": "manual", "times": times})


@pytest.fixture
def dms_moto(aws_connections, monkeypatch):
    """moto server with the DMS extension above installed for this test."""
    ext = DmsMotoExtension()
    ext.install(monkeypatch)
    ext.instance_describes_until_available(1)
    yield ext
    state_manager.unset_transition("dms::replicationinstance")


def running_cdc_task(dms_client: Any, *, instance_id: str = "orders-mig-repl", task_id: str = "orders-mig-app-cdc",
                     start_lsn: str = "0/1") -> dict[str, str]:
    """A started CDC task (instance, endpoints, task) made with plain boto3 calls, for sensor tests."""
    instance = dms_client.create_replication_instance(
        ReplicationInstanceIdentifier=instance_id, ReplicationInstanceClass="dms.t3.medium")["ReplicationInstance"]
    endpoints = {
        side: dms_client.create_endpoint(EndpointIdentifier=f"{task_id}-{side}", EndpointType=side,
                                         EngineName="postgres", ServerName="db.example", Port=5432,
                                         DatabaseName="app", Username="u", Password="p")["Endpoint"]["EndpointArn"]
        for side in ("source", "target")
    }
    task = dms_client.create_replication_task(
        ReplicationTaskIdentifier=task_id, SourceEndpointArn=endpoints["source"],
        TargetEndpointArn=endpoints["target"], ReplicationInstanceArn=instance["ReplicationInstanceArn"],
        MigrationType="cdc", TableMappings='{"rules": []}', CdcStartPosition=start_lsn)["ReplicationTask"]
    arn = task["ReplicationTaskArn"]
    filters = [{"Name": "replication-task-arn", "Values": [arn]}]
    dms_client.describe_replication_tasks(Filters=filters)
    dms_client.start_replication_task(ReplicationTaskArn=arn, StartReplicationTaskType="start-replication",
                                      CdcStartPosition=start_lsn)
    status = dms_client.describe_replication_tasks(Filters=filters)["ReplicationTasks"][0]["Status"]
    assert status == "running", status
    return {"arn": arn, "instance_id": instance_id, "resource_id": arn.rsplit(":", 1)[1],
            "instance_arn": instance["ReplicationInstanceArn"]}
