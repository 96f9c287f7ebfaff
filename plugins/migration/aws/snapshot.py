"""The RDS snapshot path: snapshot the source instance, share it, copy and restore it in the target
account, wait for it, and read the restored instance's log (``RdsLogReader``) for its clone point."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from migration.aws.common import (
    INSTANCE,
    AwsMigrationError,
    check_account_id,
    check_identifier,
    error_code,
    migration_tags,
    optional_params,
    parse_arn,
    require_db,
    require_ours,
    tag_dict,
)


def _describe_snapshot(rds: Any, snapshot_identifier: str) -> dict[str, Any] | None:
    try:
        snapshots = rds.describe_db_snapshots(DBSnapshotIdentifier=snapshot_identifier)["DBSnapshots"]
    except ClientError as exc:
        if error_code(exc) == "DBSnapshotNotFound":
            return None
        raise
    return snapshots[0] if snapshots else None


def _snapshot_tags(snapshot: dict[str, Any]) -> dict[str, str]:
    return tag_dict(snapshot.get("TagList"))


def ensure_db_snapshot(rds: Any, *, migration_id: str, instance_identifier: str,
                       snapshot_identifier: str) -> dict[str, Any]:
    """A manual snapshot of the source instance, or the one an earlier try made."""
    check_identifier(instance_identifier, field="source.instance_identifier")
    check_identifier(snapshot_identifier, field="snapshot identifier", max_length=255)
    source = require_db(rds, db_type=INSTANCE.db_type, identifier=instance_identifier,
                        field="source.instance_identifier")
    snapshot = _describe_snapshot(rds, snapshot_identifier)
    created = snapshot is None
    if snapshot is None:
        snapshot = rds.create_db_snapshot(DBInstanceIdentifier=instance_identifier,
                                          DBSnapshotIdentifier=snapshot_identifier,
                                          Tags=migration_tags(migration_id, source.arn))["DBSnapshot"]
    else:
        if snapshot.get("DBInstanceIdentifier") != instance_identifier:
            raise AwsMigrationError(
                f"DB snapshot {snapshot_identifier} already exists but is of instance "
                f"{snapshot.get('DBInstanceIdentifier')}, not {instance_identifier}: delete it or choose another "
                f"migration id")
        require_ours("DB snapshot", snapshot_identifier, _snapshot_tags(snapshot), migration_id, source.arn,
                      "migration id")
    return {"snapshot_identifier": snapshot_identifier, "snapshot_arn": snapshot["DBSnapshotArn"],
            "status": snapshot.get("Status"), "encrypted": bool(snapshot.get("Encrypted")),
            "kms_key_id": snapshot.get("KmsKeyId"), "created": created}


def share_db_snapshot(rds: Any, *, snapshot_identifier: str, account_id: str) -> bool:
    """Let ``account_id`` copy/restore the snapshot; True if the attribute changed."""
    check_account_id(account_id, field="target account id")
    if account_id in _restore_accounts(rds, snapshot_identifier):
        return False
    rds.modify_db_snapshot_attribute(DBSnapshotIdentifier=snapshot_identifier, AttributeName="restore",
                                     ValuesToAdd=[account_id])
    return True


def unshare_db_snapshot(rds: Any, *, snapshot_identifier: str, account_id: str) -> bool:
    """Take the share back; True if it changed. A missing snapshot counts as unshared."""
    try:
        accounts = _restore_accounts(rds, snapshot_identifier)
    except ClientError as exc:
        if error_code(exc) == "DBSnapshotNotFound":
            return False
        raise
    if account_id not in accounts:
        return False
    rds.modify_db_snapshot_attribute(DBSnapshotIdentifier=snapshot_identifier, AttributeName="restore",
                                     ValuesToRemove=[account_id])
    return True


def _restore_accounts(rds: Any, snapshot_identifier: str) -> set[str]:
    result = rds.describe_db_snapshot_attributes(DBSnapshotIdentifier=snapshot_identifier)["DBSnapshotAttributesResult"]
    for attribute in result.get("DBSnapshotAttributes", []):
        if attribute.get("AttributeName") == "restore":
            return set(attribute.get("AttributeValues", []))
    return set()


def ensure_snapshot_copy(rds: Any, *, migration_id: str, source_snapshot_arn: str, snapshot_identifier: str,
                         kms_key_id: str | None) -> dict[str, Any]:
    """Copy of the shared snapshot in the target account, re-encrypted with the target's key."""
    check_identifier(snapshot_identifier, field="target snapshot identifier", max_length=255)
    arn = parse_arn(source_snapshot_arn, field="source_snapshot_arn")
    if arn.service != "rds" or not arn.resource.startswith("snapshot:"):
        raise ValueError(f"source_snapshot_arn: expected an RDS DB snapshot ARN, got {source_snapshot_arn!r}")
    snapshot = _describe_snapshot(rds, snapshot_identifier)
    created = snapshot is None
    if snapshot is None:
        snapshot = rds.copy_db_snapshot(SourceDBSnapshotIdentifier=source_snapshot_arn,
                                        TargetDBSnapshotIdentifier=snapshot_identifier,
                                        Tags=migration_tags(migration_id, source_snapshot_arn),
                                        **optional_params(KmsKeyId=kms_key_id))["DBSnapshot"]
    else:
        require_ours("DB snapshot", snapshot_identifier, _snapshot_tags(snapshot), migration_id,
                      source_snapshot_arn, "migration id")
    return {"snapshot_identifier": snapshot_identifier, "snapshot_arn": snapshot["DBSnapshotArn"],
            "status": snapshot.get("Status"), "created": created}


def ensure_instance_from_snapshot(
    rds: Any,
    *,
    migration_id: str,
    instance_identifier: str,
    snapshot_identifier: str,
    instance_class: str | None = None,
    subnet_group: str | None = None,
    security_group_ids: Sequence[str] = (),
    parameter_group: str | None = None,
) -> dict[str, Any]:
    """The target instance restored from the snapshot copy, or the one an earlier try restored."""
    check_identifier(instance_identifier, field="target.instance_identifier")
    snapshot = _describe_snapshot(rds, snapshot_identifier)
    if snapshot is None:
        raise AwsMigrationError(f"DB snapshot {snapshot_identifier} does not exist in the target account: run the "
                                f"copy task first")
    source_arn = snapshot["DBSnapshotArn"]
    return INSTANCE.ensure(
        rds, instance_identifier,
        lambda: rds.restore_db_instance_from_db_snapshot(
            DBInstanceIdentifier=instance_identifier, DBSnapshotIdentifier=snapshot_identifier,
            Tags=migration_tags(migration_id, source_arn),
            **optional_params(DBInstanceClass=instance_class, DBSubnetGroupName=subnet_group,
                              VpcSecurityGroupIds=security_group_ids, DBParameterGroupName=parameter_group),
        )["DBInstance"],
        field="target.instance_identifier", migration_id=migration_id, source_arn=source_arn)[0]


# RDS caps one portion at 1 MB: past it the portion ends with this text and the Marker skips the
# lines that did not fit.
TRUNCATED_MARKER = "[Your log message was truncated]"


class RdsLogReader:
    """``reader()`` returns the full text of an RDS instance's log files, oldest file first.

    Only files written since the instance was created are read (``FileLastWritten``: its
    ``InstanceCreateTime``, or ``since_epoch_ms``), so a "redo done at" line of an earlier life of
    the instance cannot win. Each file is read in portions of about 1,000 lines from Marker "0",
    following the returned Marker while AdditionalDataPending is true. A portion that RDS truncated
    at 1 MB (it ends with ``TRUNCATED_MARKER`` and its Marker skips the rest) is read again from the
    same Marker with fewer lines, so no line is lost; only a single line over 1 MB stays cut.
    """

    def __init__(self, rds: Any, instance_identifier: str, *, lines_per_portion: int = 1000,
                 since_epoch_ms: int | None = None):
        check_identifier(instance_identifier, field="instance_identifier")
        if lines_per_portion < 1:
            raise ValueError(f"lines_per_portion: expected a positive number, got {lines_per_portion}")
        self.rds = rds
        self.instance_identifier = instance_identifier
        self.lines_per_portion = lines_per_portion
        self.since_epoch_ms = since_epoch_ms
        self.truncated_reads = 0

    def created_epoch_ms(self) -> int | None:
        instance = self.rds.describe_db_instances(DBInstanceIdentifier=self.instance_identifier)["DBInstances"][0]
        created = instance.get("InstanceCreateTime")
        return int(created.timestamp() * 1000) if created else None

    def log_files(self) -> list[dict[str, Any]]:
        since = self.since_epoch_ms if self.since_epoch_ms is not None else self.created_epoch_ms()
        kwargs: dict[str, Any] = {"DBInstanceIdentifier": self.instance_identifier}
        if since is not None:
            kwargs["FileLastWritten"] = since
        files = []
        for page in self.rds.get_paginator("describe_db_log_files").paginate(**kwargs):
            files.extend(f for f in page.get("DescribeDBLogFiles", []) if since is None
                         or f.get("LastWritten", 0) >= since)
        return sorted(files, key=lambda f: (f.get("LastWritten", 0), f.get("LogFileName", "")))

    def read_file(self, name: str) -> str:
        parts: list[str] = []
        marker = "0"
        lines = self.lines_per_portion
        while True:
            response = self.rds.download_db_log_file_portion(
                DBInstanceIdentifier=self.instance_identifier, LogFileName=name, Marker=marker,
                NumberOfLines=lines)
            data = response.get("LogFileData") or ""
            if TRUNCATED_MARKER in data:
                self.truncated_reads += 1
                if lines > 1:
                    lines = max(1, lines // 4)  # the same portion again, in smaller pieces
                    continue
                data = data.replace(TRUNCATED_MARKER, "")  # one line over 1 MB: keep what RDS sends of it
            parts.append(data)
            if not response.get("AdditionalDataPending"):
                return "".join(parts)
            next_marker = response.get("Marker")
            if not next_marker or next_marker == marker:
                raise AwsMigrationError(f"reading log {name} of {self.instance_identifier}: AdditionalDataPending "
                                        f"but the marker did not move ({marker!r})")
            marker = next_marker

    def __call__(self) -> str:
        texts = []
        for log_file in self.log_files():
            text = self.read_file(log_file["LogFileName"])
            if text and not text.endswith("\n"):
                text += "\n"
            texts.append(text)
        return "".join(texts)


def snapshot_available(rds: Any, *, snapshot_identifier: str) -> tuple[bool, dict[str, Any]]:
    snapshot = _describe_snapshot(rds, snapshot_identifier)
    if snapshot is None:
        raise AwsMigrationError(f"DB snapshot {snapshot_identifier} does not exist: did the task that creates it run?")
    status = snapshot.get("Status", "")
    if status in ("failed", "deleting", "incompatible-restore"):
        raise AwsMigrationError(f"DB snapshot {snapshot_identifier} is {status!r}: delete it and rerun the task that "
                                f"creates it")
    return status == "available", {"snapshot_identifier": snapshot_identifier, "status": status,
                                   "snapshot_arn": snapshot.get("DBSnapshotArn"),
                                   "encrypted": bool(snapshot.get("Encrypted")), "kms_key_id": snapshot.get("KmsKeyId"),
                                   "percent_progress": snapshot.get("PercentProgress")}
