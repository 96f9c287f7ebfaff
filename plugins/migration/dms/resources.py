"""DMS resources through boto3: the replication instance, endpoints, connection tests and tasks.

Each is found by identifier before it is created, so a rerun reuses what an earlier try made. The
replication task's rules live here too: when an existing task may be reused (``existing_cdc_task``)
and how a task in each status is started without replaying changes (``cdc_start``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from migration.aws.common import error_code
from migration.dms.errors import DmsError
from migration.dms.requests import OWNER_TAG, check_arn, check_identifier, check_positive
from migration.lsn import LSN

INSTANCE_FAILED_STATES = frozenset(
    {"deleting", "failed", "incompatible-credentials", "incompatible-network",
     "inaccessible-encryption-credentials", "storage-full"}
)


def _describe_or_none(call: Callable[..., dict], key: str, **kwargs: Any) -> list[dict]:
    # DMS answers a filter that matches nothing with ResourceNotFoundFault, not an empty list.
    try:
        return call(**kwargs).get(key, [])
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundFault":
            return []
        raise


def find_replication_instance(dms: Any, *, identifier: str | None = None, arn: str | None = None) -> dict | None:
    name, value = ("replication-instance-arn", arn) if arn else ("replication-instance-id", identifier)
    found = _describe_or_none(dms.describe_replication_instances, "ReplicationInstances",
                              Filters=[{"Name": name, "Values": [value]}])
    key = "ReplicationInstanceArn" if arn else "ReplicationInstanceIdentifier"
    found = [item for item in found if item.get(key) == value]
    return found[0] if found else None


def _tags(dms: Any, arn: str) -> dict[str, str]:
    tags = dms.list_tags_for_resource(ResourceArn=arn).get("TagList", [])
    return {tag["Key"]: tag.get("Value", "") for tag in tags}


def owned_by(dms: Any, arn: str, migration_id: str) -> bool:
    """True when the resource carries this migration's ownership tag (it was created by this migration)."""
    return _tags(dms, arn).get(OWNER_TAG) == migration_id


def _instance_result(instance: dict, created: bool) -> dict[str, Any]:
    return {
        "arn": instance["ReplicationInstanceArn"],
        "identifier": instance["ReplicationInstanceIdentifier"],
        "status": instance.get("ReplicationInstanceStatus"),
        "created": created,
    }


def ensure_replication_instance(dms: Any, *, identifier: str, migration_id: str,
                                instance_class: str = "dms.t3.medium", allocated_storage_gb: int = 50,
                                subnet_group: str | None = None, security_group_ids: Iterable[str] = (),
                                multi_az: bool = False, engine_version: str | None = None,
                                publicly_accessible: bool = False) -> dict[str, Any]:
    """Find the replication instance by identifier or create it; ``created`` says whether this migration owns it.

    Ownership is the tag written at creation, so a retry after a crash still knows the instance is its own.
    """
    check_identifier(identifier, "replication_instance_identifier", limit=63)
    check_positive(allocated_storage_gb, "allocated_storage_gb", minimum=5)
    existing = find_replication_instance(dms, identifier=identifier)
    if existing:
        if existing.get("ReplicationInstanceStatus") == "deleting":
            raise DmsError(f"replication instance {identifier} is being deleted; wait for it to go, then rerun")
        return _instance_result(existing, owned_by(dms, existing["ReplicationInstanceArn"], migration_id))
    request: dict[str, Any] = {
        "ReplicationInstanceIdentifier": identifier,
        "ReplicationInstanceClass": instance_class,
        "AllocatedStorage": allocated_storage_gb,
        "MultiAZ": bool(multi_az),
        "PubliclyAccessible": bool(publicly_accessible),
        "Tags": [{"Key": OWNER_TAG, "Value": migration_id}],
    }
    if subnet_group:
        request["ReplicationSubnetGroupIdentifier"] = subnet_group
    groups = list(security_group_ids or ())
    if groups:
        request["VpcSecurityGroupIds"] = groups
    if engine_version:
        request["EngineVersion"] = engine_version
    instance = dms.create_replication_instance(**request)["ReplicationInstance"]
    return _instance_result(instance, True)


def reuse_replication_instance(dms: Any, arn: str) -> dict[str, Any]:
    """A configured instance: it must exist; it is never ``created`` (so never deleted by cleanup)."""
    check_arn(arn, "replication_instance_arn", "rep")
    existing = find_replication_instance(dms, arn=arn)
    if not existing:
        raise DmsError(f"replication_instance_arn {arn} was not found in this account and region; "
                       "check dms.replication_instance_arn or leave it unset to create one")
    return _instance_result(existing, False)


def replication_instance_state(dms: Any, arn: str) -> tuple[bool, dict[str, Any]]:
    instance = find_replication_instance(dms, arn=arn)
    if not instance:
        raise DmsError(f"replication instance {arn} disappeared while waiting for it")
    status = instance.get("ReplicationInstanceStatus")
    if status in INSTANCE_FAILED_STATES:
        raise DmsError(f"replication instance {instance['ReplicationInstanceIdentifier']} is {status}; "
                       "check its network and KMS settings in the DMS console")
    return status == "available", {"arn": arn, "identifier": instance["ReplicationInstanceIdentifier"],
                                   "status": status}


def tasks_on_instance(dms: Any, arn: str) -> list[str]:
    """Identifiers of the replication tasks that run on the instance ``arn``."""
    found = _describe_or_none(dms.describe_replication_tasks, "ReplicationTasks",
                              Filters=[{"Name": "replication-instance-arn", "Values": [arn]}], WithoutSettings=True)
    return sorted(item["ReplicationTaskIdentifier"] for item in found if item.get("ReplicationInstanceArn") == arn)


def delete_replication_instance_if_owned(dms: Any, *, identifier: str, migration_id: str) -> dict[str, Any]:
    """Delete the instance only when this migration created it (ownership tag) and no replication task
    runs on it any more (those of databases that have not cut over yet keep it); absent is fine."""
    instance = find_replication_instance(dms, identifier=identifier)
    if not instance:
        return {"identifier": identifier, "deleted": False, "reason": "absent"}
    arn = instance["ReplicationInstanceArn"]
    if not owned_by(dms, arn, migration_id):
        return {"identifier": identifier, "arn": arn, "deleted": False,
                "reason": f"not created by migration {migration_id} (no {OWNER_TAG} tag); left in place"}
    remaining = tasks_on_instance(dms, arn)
    if remaining:
        return {"identifier": identifier, "arn": arn, "deleted": False,
                "reason": f"kept: replication task(s) {', '.join(remaining)} still use it (databases that have not "
                          "cut over yet); the cleanup after their cutover deletes it"}
    if instance.get("ReplicationInstanceStatus") != "deleting":
        dms.delete_replication_instance(ReplicationInstanceArn=arn)
    return {"identifier": identifier, "arn": arn, "deleted": True, "reason": "created by this migration"}


def cleanup_scope(plan: Iterable[dict[str, Any]] | None, cutover: dict[str, Any] | None) -> dict[str, Any]:
    """The DMS tasks and endpoints one run's cleanup may delete.

    Only this run's databases (``plan``: the run's per-database entries with ``database``,
    ``dms_task_id``, ``dms_source_endpoint`` and ``dms_target_endpoint``), and only once this run's
    cutover completed (``cutover``: its outcome, ``status`` and, when it names them, ``databases``).
    The migration's other databases (narrowed out of this run, or whose run failed and will resume)
    keep their tasks and endpoints. Returns ``{databases, replication_task_ids, endpoint_identifiers,
    reason}``.
    """
    entries = [dict(item) for item in (plan or [])]
    status = (cutover or {}).get("status")
    if status != "completed":
        return {"databases": [], "replication_task_ids": [], "endpoint_identifiers": [],
                "reason": f"this run's cutover did not complete (status {status!r}): every DMS task and endpoint "
                          "stays so a rerun resumes from it"}
    cut_over = (cutover or {}).get("databases")
    scope = [item for item in entries if cut_over is None or item.get("database") in cut_over]
    tasks, endpoints = [], []
    for i, item in enumerate(scope):
        tasks.append(check_identifier(item.get("dms_task_id"), f"plan[{i}].dms_task_id"))
        endpoints += [check_identifier(item.get(f"dms_{side}_endpoint"), f"plan[{i}].dms_{side}_endpoint")
                      for side in ("source", "target")]
    databases = [item["database"] for item in scope]
    return {"databases": databases, "replication_task_ids": tasks, "endpoint_identifiers": endpoints,
            "reason": f"this run cut over {', '.join(databases) or 'no database'}; only their DMS tasks and "
                      "endpoints are deleted"}


def find_endpoint(dms: Any, identifier: str) -> dict | None:
    found = _describe_or_none(dms.describe_endpoints, "Endpoints",
                              Filters=[{"Name": "endpoint-id", "Values": [identifier]}])
    found = [item for item in found if item.get("EndpointIdentifier") == identifier]
    return found[0] if found else None


_DRIFT_FIELDS = ("ServerName", "Port", "DatabaseName", "Username", "SslMode")


def _endpoint_drift(existing: dict, request: dict) -> list[str]:
    drift = [key for key in _DRIFT_FIELDS if key in request and existing.get(key) != request[key]]
    current = existing.get("PostgreSQLSettings") or {}
    drift += [f"PostgreSQLSettings.{key}" for key, value in (request.get("PostgreSQLSettings") or {}).items()
              if current.get(key) != value]
    return drift


def ensure_postgres_endpoint(dms: Any, request: dict[str, Any], *, password: str | None = None) -> dict[str, Any]:
    """Create the endpoint described by ``request`` (see endpoint_request), or bring an existing one in line.

    The password is sent to DMS and nowhere else: it is not part of the returned value.
    """
    identifier = request["EndpointIdentifier"]
    existing = find_endpoint(dms, identifier)
    secret = password if "ServerName" in request else None
    if existing is None:
        endpoint = dms.create_endpoint(**request, **({"Password": secret} if secret else {}))["Endpoint"]
        return {"arn": endpoint["EndpointArn"], "identifier": identifier, "created": True, "modified": []}
    if existing.get("EndpointType", "").lower() != request["EndpointType"] or \
            existing.get("EngineName") != request["EngineName"]:
        raise DmsError(f"endpoint {identifier} exists as a {existing.get('EngineName')} "
                       f"{existing.get('EndpointType')} endpoint; delete it or choose another migration id")
    drift = _endpoint_drift(existing, request)
    if drift:
        changes = {key: request[key] for key in _DRIFT_FIELDS if key in request}
        if "PostgreSQLSettings" in request:
            changes["PostgreSQLSettings"] = request["PostgreSQLSettings"]
        dms.modify_endpoint(EndpointArn=existing["EndpointArn"], **changes,
                            **({"Password": secret} if secret else {}))
    return {"arn": existing["EndpointArn"], "identifier": identifier, "created": False, "modified": drift}


def delete_endpoint_if_exists(dms: Any, identifier: str) -> bool:
    endpoint = find_endpoint(dms, identifier)
    if endpoint is None:
        return False
    try:
        dms.delete_endpoint(EndpointArn=endpoint["EndpointArn"])
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundFault":
            return False
        if error_code(exc) == "InvalidResourceStateFault":
            raise DmsError(f"endpoint {identifier} is still used by a replication task; delete the task first "
                           f"({exc.response['Error'].get('Message', '')})") from None
        raise
    return True


def connection_state(dms: Any, *, replication_instance_arn: str, endpoint_arn: str) -> dict | None:
    found = _describe_or_none(dms.describe_connections, "Connections", Filters=[
        {"Name": "endpoint-arn", "Values": [endpoint_arn]},
        {"Name": "replication-instance-arn", "Values": [replication_instance_arn]},
    ])
    found = [item for item in found if item.get("EndpointArn") == endpoint_arn
             and item.get("ReplicationInstanceArn") == replication_instance_arn]
    return found[0] if found else None


def start_connection_test(dms: Any, *, replication_instance_arn: str, endpoint_arn: str) -> dict[str, Any]:
    """Start test_connection unless one is already running for the pair; returns the connection."""
    current = connection_state(dms, replication_instance_arn=replication_instance_arn, endpoint_arn=endpoint_arn)
    if current and current.get("Status") == "testing":
        return current
    return dms.test_connection(ReplicationInstanceArn=replication_instance_arn, EndpointArn=endpoint_arn)["Connection"]


def connection_test_state(dms: Any, *, replication_instance_arn: str, endpoint_arn: str) -> tuple[bool, dict]:
    current = connection_state(dms, replication_instance_arn=replication_instance_arn, endpoint_arn=endpoint_arn)
    if current is None:
        return False, {"endpoint_arn": endpoint_arn, "status": "not-started"}
    status = current.get("Status")
    payload = {"endpoint_arn": endpoint_arn, "endpoint_identifier": current.get("EndpointIdentifier"),
               "status": status}
    if status == "failed":
        raise DmsError(f"test connection from replication instance {current.get('ReplicationInstanceIdentifier')} "
                       f"to endpoint {current.get('EndpointIdentifier')} failed: "
                       f"{current.get('LastFailureMessage') or 'no message from DMS'}")
    return status == "successful", payload


def find_task(dms: Any, identifier: str) -> dict | None:
    found = _describe_or_none(dms.describe_replication_tasks, "ReplicationTasks",
                              Filters=[{"Name": "replication-task-id", "Values": [identifier]}],
                              WithoutSettings=True)
    found = [item for item in found if item.get("ReplicationTaskIdentifier") == identifier]
    return found[0] if found else None


def stop_tasks(dms: Any, arns: Iterable[str], *, timeout: float = 300.0, poll_interval: float = 1.0,
               clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
               ) -> dict[str, dict[str, Any]]:
    """Stop every running task (all stop calls first, then one wait) until each is 'stopped'.

    A task that is not running (ready, failed, already stopped) is left as it is.
    """
    started = clock()
    arns = list(arns)
    tasks: dict[str, dict] = {}
    for arn in arns:
        task = describe_task(dms, arn)
        if task is None:
            raise DmsError(f"replication task {arn} was not found")
        tasks[arn] = task
    was = {arn: task["Status"] for arn, task in tasks.items()}
    requested: set[str] = set()
    while True:
        waiting = []
        for arn, task in tasks.items():
            status = task["Status"]
            if status == "failed" and arn in requested:
                raise DmsError(f"replication task {arn} failed while stopping{task_failure(task)}")
            if status == "running" and arn not in requested:
                dms.stop_replication_task(ReplicationTaskArn=arn)
                requested.add(arn)
                waiting.append(arn)
            elif status in ("running", "stopping", "starting"):
                waiting.append(arn)
        if not waiting:
            return {arn: {"arn": arn, "stopped": tasks[arn]["Status"] == "stopped", "was": was[arn],
                          "status": tasks[arn]["Status"], "stop_reason": tasks[arn].get("StopReason"),
                          "waited_seconds": round(clock() - started, 3)} for arn in arns}
        if clock() - started >= timeout:
            late = ", ".join(f"{arn} ({tasks[arn]['Status']})" for arn in waiting)
            raise DmsError(f"replication task(s) not stopped after {timeout:g} s: {late}")
        sleep(poll_interval)
        for arn in waiting:
            task = describe_task(dms, arn)
            if task is None:
                raise DmsError(f"replication task {arn} disappeared while stopping")
            tasks[arn] = task


def stop_task(dms: Any, arn: str, *, timeout: float = 300.0, poll_interval: float = 1.0,
              clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
              ) -> dict[str, Any]:
    """Stop one task and wait for 'stopped' (see stop_tasks)."""
    return stop_tasks(dms, [arn], timeout=timeout, poll_interval=poll_interval, clock=clock, sleep=sleep)[arn]


def prepare_task_deletion(dms: Any, identifier: str, *, stop_timeout: float = 600.0,
                          stop_poll_interval: float = 5.0) -> str | None:
    """The ARN of the task ``identifier`` once it can be deleted, or None when it does not exist.

    DMS refuses to delete a running, starting or stopping task (InvalidResourceStateFault), so such a
    task is stopped first and waited for (``migration.dms.cutover.stop_task``).
    """
    check_identifier(identifier, "replication_task_id")
    task = find_task(dms, identifier)
    if task is None:
        return None
    arn = task["ReplicationTaskArn"]
    if task["Status"] in ("running", "starting", "stopping"):
        stop_task(dms, arn, timeout=stop_timeout, poll_interval=stop_poll_interval)
    return arn


def describe_task(dms: Any, arn: str) -> dict | None:
    found = _describe_or_none(dms.describe_replication_tasks, "ReplicationTasks",
                              Filters=[{"Name": "replication-task-arn", "Values": [arn]}], WithoutSettings=True)
    found = [item for item in found if item.get("ReplicationTaskArn") == arn]
    return found[0] if found else None


def task_failure(task: dict) -> str:
    details = [f"{field}: {task[field]}" for field in ("StopReason", "LastFailureMessage") if task.get(field)]
    return f" ({'; '.join(details)})" if details else ""



# ---------------------------------------------------------------------------------------------
# The CDC task's reuse and start rules
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExistingTask:
    """A replication task found by identifier that a rerun reuses instead of creating another."""

    arn: str
    status: str
    wait_until_ready: bool  # still 'creating': wait for 'ready' before it is used


def existing_cdc_task(dms: Any, *, identifier: str, source_endpoint_arn: str, target_endpoint_arn: str,
                      replication_instance_arn: str) -> ExistingTask | None:
    """The CDC task named ``identifier`` when a rerun may reuse it; None when there is none.

    A task is reused only when it joins the same endpoints and instance as a CDC-only task; it keeps
    the CdcStartPosition it was created with. One that joins others, or is being deleted, raises
    DmsError: the rerun must not carry on with it.
    """
    check_identifier(identifier, "replication_task_id")
    task = find_task(dms, identifier)
    if task is None:
        return None
    wanted = {"SourceEndpointArn": source_endpoint_arn, "TargetEndpointArn": target_endpoint_arn,
              "ReplicationInstanceArn": replication_instance_arn, "MigrationType": "cdc"}
    differs = [key for key, value in wanted.items() if task.get(key) != value]
    if differs:
        raise DmsError(f"replication task {identifier} exists with another {', '.join(differs)}; "
                       "delete it (cleanup) before rerunning with the new endpoints or instance")
    status = task.get("Status")
    if status == "deleting":
        raise DmsError(f"replication task {identifier} is being deleted; rerun when gone")
    return ExistingTask(arn=task["ReplicationTaskArn"], status=status, wait_until_ready=status == "creating")


@dataclass(frozen=True)
class CdcStart:
    """How to start a CDC task: ``start_type`` None leaves it as it is (already running or starting)."""

    status_before: str
    start_type: str | None
    start_kwargs: dict[str, Any] = field(default_factory=dict)
    reason: str = field(default="", compare=False)


def ran_before(task: dict[str, Any]) -> bool:
    """DMS has a checkpoint for the task: it ran and processed changes (RecoveryCheckpoint, ReplicationTaskStats).

    A task that failed on its first start (LastFailureMessage, no checkpoint) has none.
    """
    if task.get("RecoveryCheckpoint"):
        return True
    stats = task.get("ReplicationTaskStats") or {}
    return int(stats.get("ElapsedTimeMillis") or 0) > 0 and not task.get("LastFailureMessage")


def cdc_start(dms: Any, arn: str, start: LSN, *, start_kwargs: dict[str, Any] | None = None) -> CdcStart:
    """Start the task once from the resolved LSN and never replay.

    A ready task starts with start-replication and ``CdcStartPosition`` (merged into ``start_kwargs``);
    a running or starting task is left alone. A stopped or failed task that ran before resumes from
    DMS's own checkpoint (resume-processing, no other arguments), since starting it from the LSN again
    would replay changes the target already has. resume-processing is only for tasks that ran before
    (DMS API reference, StartReplicationTask): one that failed on its first start has no checkpoint, so
    it starts again with start-replication at the CdcStartPosition it was created with (the resolved
    LSN when DMS does not report it). Any other status raises DmsError.
    """
    task = describe_task(dms, arn)
    if task is None:
        raise DmsError(f"replication task {arn} was not found; create it first")
    status = task["Status"]
    if status in ("running", "starting"):
        return CdcStart(status, None, reason=f"already {status}")
    if status == "ready":
        return CdcStart(status, "start-replication", {**(start_kwargs or {}), "CdcStartPosition": str(start)},
                        reason="first start, from the resolved LSN")
    if status in ("stopped", "failed"):
        if ran_before(task):
            return CdcStart(status, "resume-processing",
                            reason=f"ran before (checkpoint {task.get('RecoveryCheckpoint') or 'kept by DMS'}): "
                                   "resumes there")
        original = task.get("CdcStartPosition") or str(start)
        return CdcStart(status, "start-replication", {**(start_kwargs or {}), "CdcStartPosition": original},
                        reason=f"{status} before it ever ran{task_failure(task)}: no checkpoint to resume from, so "
                               f"it starts again at its original CdcStartPosition {original}")
    raise DmsError(f"replication task {arn} is {status}; it can be started when ready, stopped or failed")
