"""The Aurora clone path (target account): a copy-on-write clone of the shared source cluster, and its writer."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import ClientError

from migration.aws.common import (
    CLUSTER,
    DEFAULT_INSTANCE_CLASS,
    INSTANCE,
    SOURCE_TAG,
    TERMINAL_DB_STATUSES,
    AwsMigrationError,
    check_identifier,
    error_code,
    migration_tags,
    optional_params,
    parse_arn,
    require_db,
)


def ensure_cluster_clone(
    rds: Any,
    *,
    migration_id: str,
    cluster_identifier: str,
    source_cluster_arn: str,
    kms_key_id: str | None,
    subnet_group: str | None = None,
    security_group_ids: Sequence[str] = (),
    parameter_group: str | None = None,
    not_found_retry_seconds: float = 300.0,
    retry_interval: float = 15.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Copy-on-write clone of the shared source cluster, or the clone an earlier try made.

    A cluster ARN that is not shared with this account yet answers DBClusterNotFoundFault, the same
    error as a missing cluster, and a just-accepted RAM share takes a while to reach RDS: the restore
    is tried again every ``retry_interval`` for up to ``not_found_retry_seconds``, then fails saying so.
    """
    check_identifier(cluster_identifier, field="target.cluster_identifier")
    source = parse_arn(source_cluster_arn, field="source_cluster_arn")
    if source.service != "rds" or not source.resource.startswith("cluster:"):
        raise ValueError(f"source_cluster_arn: expected an RDS cluster ARN, got {source_cluster_arn!r}")
    kwargs: dict[str, Any] = {
        "DBClusterIdentifier": cluster_identifier,
        "SourceDBClusterIdentifier": source_cluster_arn,
        "RestoreType": "copy-on-write",
        "UseLatestRestorableTime": True,
        "Tags": migration_tags(migration_id, source_cluster_arn),
        **optional_params(KmsKeyId=kms_key_id, DBSubnetGroupName=subnet_group, VpcSecurityGroupIds=security_group_ids,
                          DBClusterParameterGroupName=parameter_group),
    }
    return CLUSTER.ensure(rds, cluster_identifier,
                          lambda: _restore_when_shared(rds, kwargs, not_found_retry_seconds, retry_interval, clock,
                                                       sleep),
                          field="target.cluster_identifier", migration_id=migration_id,
                          source_arn=source_cluster_arn)[0]


def _restore_when_shared(rds: Any, kwargs: dict[str, Any], retry_seconds: float, interval: float,
                         clock: Callable[[], float], sleep: Callable[[float], None]) -> dict[str, Any]:
    started, attempts = clock(), 0
    while True:
        attempts += 1
        try:
            return rds.restore_db_cluster_to_point_in_time(**kwargs)["DBCluster"]
        except ClientError as exc:
            if error_code(exc) != CLUSTER.not_found_code:
                raise
            if clock() - started >= retry_seconds:
                raise AwsMigrationError(
                    f"cloning {kwargs['SourceDBClusterIdentifier']} answered {CLUSTER.not_found_code} on "
                    f"{attempts} attempt(s) over {clock() - started:.0f} s. AWS gives that answer both for a "
                    f"missing cluster and for one not (yet) shared with this account: check that the RAM share "
                    f"of that cluster names this account and is accepted (task share_cluster), then rerun"
                ) from exc
        sleep(interval)


def ensure_cluster_writer(
    rds: Any,
    *,
    migration_id: str,
    cluster_identifier: str,
    instance_identifier: str,
    instance_class: str | None = None,
) -> dict[str, Any]:
    """The clone's writer instance (a clone is created without instances), or the one an earlier try made.

    AWS accepts the writer only once the restored cluster is available (writer_can_be_added).
    """
    check_identifier(instance_identifier, field="writer instance identifier")
    cluster = require_db(rds, db_type=CLUSTER.db_type, identifier=cluster_identifier, field="target.cluster_identifier")

    def create() -> dict[str, Any]:
        if cluster.status != "available":
            raise AwsMigrationError(
                f"{CLUSTER.label} {cluster_identifier} is {cluster.status!r}: its writer {instance_identifier} can be "
                f"created only once it is 'available' (RestoreDBClusterToPointInTime completes first)")
        return rds.create_db_instance(
            DBInstanceIdentifier=instance_identifier, DBClusterIdentifier=cluster_identifier, Engine=cluster.engine,
            DBInstanceClass=instance_class or DEFAULT_INSTANCE_CLASS,
            Tags=migration_tags(migration_id, cluster.tags.get(SOURCE_TAG, cluster.arn)))["DBInstance"]

    writer, existing = INSTANCE.ensure(rds, instance_identifier, create, field="writer instance identifier")
    if not writer["created"] and existing.cluster_identifier != cluster_identifier:
        raise AwsMigrationError(
            f"{INSTANCE.label} {instance_identifier} already exists outside {CLUSTER.label} {cluster_identifier} (in "
            f"{existing.cluster_identifier or 'no cluster'}): choose another writer instance identifier")
    return {**writer, "cluster_arn": cluster.arn}


def writer_can_be_added(rds: Any, *, cluster_identifier: str, instance_identifier: str) -> tuple[bool, str]:
    """(ready, cluster status): the writer exists already, or the cluster is available so it can be created.

    Fails at once when the cluster is in a state it does not leave by itself.
    """
    cluster = require_db(rds, db_type=CLUSTER.db_type, identifier=cluster_identifier, field="target.cluster_identifier")
    if cluster.status in TERMINAL_DB_STATUSES:
        raise AwsMigrationError(f"{CLUSTER.label} {cluster_identifier} is {cluster.status!r}; it will not become "
                                f"available by itself: see its events (aws rds describe-events --source-identifier "
                                f"{cluster_identifier})")
    ready = cluster.status == "available" or INSTANCE.describe(rds, instance_identifier) is not None
    return ready, cluster.status
