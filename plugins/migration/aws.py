"""The AWS half of a migration: preflight, the Aurora clone and RDS snapshot paths, cutover, cleanup.

Functions take boto3 clients and plain values and import nothing from Airflow, so operators, the
triggerer's poll checks and the tests all run the same code. Every create checks first for a
resource with the name derived from the migration, so a rerun finds what an earlier try made;
resources this module creates carry the ``pg-account-migration`` tags, and a rerun refuses to
adopt a same-named resource that lacks them.
"""

from __future__ import annotations

import ast
import copy
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from migration.sql import load

LOGICAL_REPLICATION = "rds.logical_replication"
MIGRATION_TAG = "pg-account-migration"
SOURCE_TAG = "pg-account-migration-source"
DB_TYPES = ("cluster", "instance")
DEFAULT_INSTANCE_CLASS = "db.r6g.large"
# Aurora PostgreSQL needs 11.9 for DMS CDC and aurora_volume_logical_start_lsn(); RDS needs 11.
MIN_VERSION = {"aurora-postgresql": (11, 9), "postgres": (11, 0)}
ENGINE_FOR = {"cluster": "aurora-postgresql", "instance": "postgres"}
STORAGE_METRIC = {"cluster": "FreeLocalStorage", "instance": "FreeStorageSpace"}
# Statuses a wait can never leave by itself: waiting on would only burn the timeout.
TERMINAL_DB_STATUSES = frozenset({
    "failed", "deleting", "incompatible-restore", "incompatible-parameters", "incompatible-network",
    "incompatible-option-group", "inaccessible-encryption-credentials",
    "inaccessible-encryption-credentials-recoverable", "storage-full",
})
KMS_SHARE_ACTIONS = ("kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt",
                     "kms:GenerateDataKey*", "kms:ReEncrypt*")


class AwsMigrationError(RuntimeError):
    """An AWS resource is not in the state the migration needs; the message names it and the fix."""


class PreflightFailed(AwsMigrationError):
    """One or more preflight checks failed; ``problems`` lists each with its fix."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__(f"AWS preflight found {len(self.problems)} problem(s):\n- " + "\n- ".join(self.problems))


# ---------------------------------------------------------------------------------------------
# Small helpers: error codes, ARNs, identifiers
# ---------------------------------------------------------------------------------------------

def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ('' for anything else)."""
    return exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""


@dataclass(frozen=True)
class Arn:
    partition: str
    service: str
    region: str
    account: str
    resource: str


_ARN_RE = re.compile(r"^arn:(aws[a-z-]*):([a-z0-9-]+):([a-z0-9-]*):(\d{12}|):(.+)$")
_ACCOUNT_RE = re.compile(r"^\d{12}$")
_IDENT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*$")


def parse_arn(value: Any, *, field: str = "arn") -> Arn:
    if not isinstance(value, str) or not _ARN_RE.match(value):
        raise ValueError(f"{field}: expected an ARN like arn:aws:rds:us-east-1:123456789012:cluster:name, got {value!r}")
    partition, service, region, account, resource = _ARN_RE.match(value).groups()
    return Arn(partition, service, region, account, resource)


def check_account_id(value: Any, *, field: str = "account_id") -> str:
    if not isinstance(value, str) or not _ACCOUNT_RE.match(value):
        raise ValueError(f"{field}: expected a 12-digit AWS account id, got {value!r}")
    return value


def check_identifier(value: Any, *, field: str, max_length: int = 63) -> str:
    """RDS identifiers: a letter, then letters, digits and single hyphens, not ending in a hyphen."""
    if (not isinstance(value, str) or not _IDENT_RE.match(value) or "--" in value or value.endswith("-")
            or len(value) > max_length):
        raise ValueError(
            f"{field}: expected an RDS identifier (1 to {max_length} letters, digits or single hyphens, "
            f"starting with a letter, not ending with a hyphen), got {value!r}"
        )
    return value


def check_db_type(value: Any) -> str:
    if value not in DB_TYPES:
        raise ValueError(f"db_type: expected 'cluster' (Aurora) or 'instance' (RDS), got {value!r}")
    return value


def migration_tags(migration_id: str, source_arn: str) -> list[dict[str, str]]:
    """Tags that mark a resource as made by this migration from this source."""
    return [{"Key": MIGRATION_TAG, "Value": migration_id}, {"Key": SOURCE_TAG, "Value": source_arn}]


def _tag_dict(tag_list: Iterable[dict[str, str]] | None) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in tag_list or ()}


def _require_ours(kind: str, identifier: str, tags: dict[str, str], migration_id: str, source_arn: str | None,
                  field: str) -> None:
    if tags.get(MIGRATION_TAG) != migration_id or (source_arn and tags.get(SOURCE_TAG) != source_arn):
        raise AwsMigrationError(
            f"{kind} {identifier} already exists but was not made by migration {migration_id!r} from {source_arn} "
            f"(its tags: {tags or 'none'}): choose another {field}, or delete {identifier} if it is a leftover"
        )


def _version_tuple(version: str) -> tuple[int, int] | None:
    match = re.match(r"^(\d+)(?:\.(\d+))?", version or "")
    if not match:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def parameter_group_family(engine: str, version: str) -> str:
    """The parameter group family of an engine version ("aurora-postgresql13", "postgres15")."""
    parsed = _version_tuple(version)
    return f"{engine}{parsed[0] if parsed else version}"


def as_mapping(value: Any, *, field: str) -> dict[str, Any] | None:
    """A dict from an XComArg (already native) or a rendered template (JSON or a Python literal)."""
    if value in (None, "", "None"):
        return None
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(value)
            except (ValueError, SyntaxError):
                continue
            if isinstance(parsed, dict):
                return parsed
    raise ValueError(f"{field}: expected a mapping (usually another task's XCom), got {value!r}")


def as_list(value: Any, *, field: str) -> list[Any]:
    """A list from an XComArg, a rendered template (JSON or a Python literal) or a tuple."""
    if value in (None, "", "None"):
        return []
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str):
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(value)
            except (ValueError, SyntaxError):
                continue
            if isinstance(parsed, list | tuple):
                return list(parsed)
    raise ValueError(f"{field}: expected a list, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Describing databases
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DbDescription:
    """What the migration needs to know about an Aurora cluster or an RDS instance."""

    db_type: str
    identifier: str
    arn: str
    engine: str
    engine_version: str
    status: str
    parameter_group: str | None
    parameter_apply_status: str | None
    writer_instance: str | None
    kms_key_id: str | None
    storage_encrypted: bool
    host: str | None
    port: int | None
    tags: dict[str, str] = field(default_factory=dict)
    security_group_ids: tuple[str, ...] = ()
    cluster_identifier: str | None = None

    def to_xcom(self) -> dict[str, Any]:
        data = asdict(self)
        data["security_group_ids"] = list(self.security_group_ids)
        return data


def describe_db(rds: Any, *, db_type: str, identifier: str) -> DbDescription | None:
    """The cluster or instance, or None when it does not exist (in the client's account and region)."""
    check_db_type(db_type)
    if db_type == "cluster":
        try:
            cluster = rds.describe_db_clusters(DBClusterIdentifier=identifier)["DBClusters"][0]
        except ClientError as exc:
            if error_code(exc) == "DBClusterNotFoundFault":
                return None
            raise
        writer = next((m for m in cluster.get("DBClusterMembers", []) if m.get("IsClusterWriter")), None)
        return DbDescription(
            db_type="cluster", identifier=cluster["DBClusterIdentifier"], arn=cluster["DBClusterArn"],
            engine=cluster.get("Engine", ""), engine_version=cluster.get("EngineVersion", ""),
            status=cluster.get("Status", ""), parameter_group=cluster.get("DBClusterParameterGroup"),
            parameter_apply_status=writer.get("DBClusterParameterGroupStatus") if writer else None,
            writer_instance=writer["DBInstanceIdentifier"] if writer else None,
            kms_key_id=cluster.get("KmsKeyId") if cluster.get("StorageEncrypted") else None,
            storage_encrypted=bool(cluster.get("StorageEncrypted")),
            host=cluster.get("Endpoint"), port=cluster.get("Port"), tags=_tag_dict(cluster.get("TagList")),
            security_group_ids=tuple(g["VpcSecurityGroupId"] for g in cluster.get("VpcSecurityGroups", [])),
        )
    try:
        instance = rds.describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"][0]
    except ClientError as exc:
        if error_code(exc) == "DBInstanceNotFound":
            return None
        raise
    groups = instance.get("DBParameterGroups") or [{}]
    endpoint = instance.get("Endpoint") or {}
    return DbDescription(
        db_type="instance", identifier=instance["DBInstanceIdentifier"], arn=instance["DBInstanceArn"],
        engine=instance.get("Engine", ""), engine_version=instance.get("EngineVersion", ""),
        status=instance.get("DBInstanceStatus", ""), parameter_group=groups[0].get("DBParameterGroupName"),
        parameter_apply_status=groups[0].get("ParameterApplyStatus"), writer_instance=instance["DBInstanceIdentifier"],
        kms_key_id=instance.get("KmsKeyId") if instance.get("StorageEncrypted") else None,
        storage_encrypted=bool(instance.get("StorageEncrypted")),
        host=endpoint.get("Address"), port=endpoint.get("Port"), tags=_tag_dict(instance.get("TagList")),
        security_group_ids=tuple(g["VpcSecurityGroupId"] for g in instance.get("VpcSecurityGroups", [])),
        cluster_identifier=instance.get("DBClusterIdentifier"),
    )


def require_db(rds: Any, *, db_type: str, identifier: str, field: str) -> DbDescription:
    desc = describe_db(rds, db_type=db_type, identifier=identifier)
    if desc is None:
        kind = "DB cluster" if db_type == "cluster" else "DB instance"
        raise AwsMigrationError(f"{kind} {identifier} does not exist in {_where(rds)}: check {field}")
    return desc


def _where(client: Any) -> str:
    return f"region {getattr(client.meta, 'region_name', '?')} of this connection's account"


# ---------------------------------------------------------------------------------------------
# Parameter groups
# ---------------------------------------------------------------------------------------------

def get_parameter(rds: Any, *, db_type: str, parameter_group: str, name: str) -> str | None:
    """A parameter's value in a DB cluster (Aurora) or DB (RDS) parameter group; None when unset."""
    check_db_type(db_type)
    if db_type == "cluster":
        pages = rds.get_paginator("describe_db_cluster_parameters").paginate(
            DBClusterParameterGroupName=parameter_group)
    else:
        pages = rds.get_paginator("describe_db_parameters").paginate(DBParameterGroupName=parameter_group)
    for page in pages:
        for parameter in page.get("Parameters", []):
            if parameter.get("ParameterName") == name:
                return parameter.get("ParameterValue")
    return None


def set_parameter(rds: Any, *, db_type: str, parameter_group: str, name: str, value: str) -> str | None:
    """Set a static parameter (applied at the next reboot); returns the value it had before.

    Nothing is modified when the group already holds ``value``.
    """
    if parameter_group.startswith("default."):
        raise AwsMigrationError(
            f"parameter group {parameter_group} is an RDS default group, which cannot be modified: create a custom "
            f"{'DB cluster ' if db_type == 'cluster' else 'DB '}parameter group, attach it, and name it in the config"
        )
    previous = get_parameter(rds, db_type=db_type, parameter_group=parameter_group, name=name)
    if previous == value:
        return previous
    change = [{"ParameterName": name, "ParameterValue": value, "ApplyMethod": "pending-reboot"}]
    if db_type == "cluster":
        rds.modify_db_cluster_parameter_group(DBClusterParameterGroupName=parameter_group, Parameters=change)
    else:
        rds.modify_db_parameter_group(DBParameterGroupName=parameter_group, Parameters=change)
    return previous


def parameter_group_exists(rds: Any, *, db_type: str, parameter_group: str) -> bool:
    try:
        if db_type == "cluster":
            rds.describe_db_cluster_parameter_groups(DBClusterParameterGroupName=parameter_group)
        else:
            rds.describe_db_parameter_groups(DBParameterGroupName=parameter_group)
    except ClientError as exc:
        if error_code(exc) in ("DBParameterGroupNotFound", "DBClusterParameterGroupNotFound",
                               "DBClusterParameterGroupNotFoundFault"):
            return False
        raise
    return True


def reboot_writer(rds: Any, desc: DbDescription) -> str:
    """Reboot the writer (static parameters take effect); returns the rebooted instance id."""
    if not desc.writer_instance:
        raise AwsMigrationError(f"DB cluster {desc.identifier} has no writer instance to reboot: add one first")
    rds.reboot_db_instance(DBInstanceIdentifier=desc.writer_instance)
    return desc.writer_instance


# ---------------------------------------------------------------------------------------------
# Preflight
# ---------------------------------------------------------------------------------------------

def engine_problem(desc: DbDescription) -> str | None:
    kind = "DB cluster" if desc.db_type == "cluster" else "DB instance"
    expected = ENGINE_FOR[desc.db_type]
    if desc.engine != expected:
        return (f"{kind} {desc.identifier} runs engine {desc.engine!r}; this path needs {expected} "
                f"({'Aurora PostgreSQL' if desc.db_type == 'cluster' else 'RDS for PostgreSQL'}): "
                f"check the source identifier and initial_load")
    version = _version_tuple(desc.engine_version)
    minimum = MIN_VERSION[expected]
    if version is None or version < minimum:
        wanted = f"{minimum[0]}.{minimum[1]}" if expected == "aurora-postgresql" else str(minimum[0])
        return (f"{kind} {desc.identifier} runs {expected} {desc.engine_version}; CDC from it needs {wanted} or "
                f"later: upgrade it (aws rds modify-{'db-cluster' if desc.db_type == 'cluster' else 'db-instance'} "
                f"--{'db-cluster' if desc.db_type == 'cluster' else 'db-instance'}-identifier {desc.identifier} "
                f"--engine-version <newer version> --apply-immediately)")
    return None


def status_problem(desc: DbDescription) -> str | None:
    if desc.status != "available":
        kind = "DB cluster" if desc.db_type == "cluster" else "DB instance"
        return f"{kind} {desc.identifier} is {desc.status!r}, not available: start it or wait until it is available"
    return None


def logical_replication_problem(desc: DbDescription, value: str | None) -> str | None:
    """None when rds.logical_replication is 1 and applied; else the exact change to make."""
    kind = "DB cluster" if desc.db_type == "cluster" else "DB instance"
    group_kind = "DB cluster parameter group" if desc.db_type == "cluster" else "DB parameter group"
    modify = "modify-db-cluster-parameter-group --db-cluster-parameter-group-name" if desc.db_type == "cluster" \
        else "modify-db-parameter-group --db-parameter-group-name"
    reboot = f"aws rds reboot-db-instance --db-instance-identifier {desc.writer_instance}"
    if value == "1":
        if desc.parameter_apply_status and desc.parameter_apply_status != "in-sync":
            return (f"rds.logical_replication=1 is set in {group_kind} {desc.parameter_group} of {kind} "
                    f"{desc.identifier} but not applied ({desc.parameter_apply_status}): reboot the writer ({reboot})")
        return None
    group = desc.parameter_group or "(none)"
    if group.startswith("default."):
        family = parameter_group_family(desc.engine, desc.engine_version)
        attach = (f"aws rds modify-db-cluster --db-cluster-identifier {desc.identifier} "
                  f"--db-cluster-parameter-group-name <new group>") if desc.db_type == "cluster" else \
            (f"aws rds modify-db-instance --db-instance-identifier {desc.identifier} "
             f"--db-parameter-group-name <new group>")
        return (f"{kind} {desc.identifier} uses the default {group_kind} {group}, where rds.logical_replication is "
                f"{value or '0'} and which cannot be changed: create a custom {group_kind} of family {family} with "
                f"rds.logical_replication=1, attach it ({attach}), then reboot the writer ({reboot})")
    return (f"rds.logical_replication is {value or '0 (default)'} in {group_kind} {group} of {kind} "
            f"{desc.identifier}: run `aws rds {modify} {group} --parameters "
            f"ParameterName=rds.logical_replication,ParameterValue=1,ApplyMethod=pending-reboot`, then reboot the "
            f"writer ({reboot}); or set set_logical_replication: true in the migration config to let the "
            f"migration do both")


def describe_kms_key(kms: Any, key_id: str) -> dict[str, Any] | None:
    try:
        return kms.describe_key(KeyId=key_id)["KeyMetadata"]
    except ClientError as exc:
        if error_code(exc) in ("NotFoundException", "NotFound"):
            return None
        raise


def source_kms_problem(kms: Any, desc: DbDescription, *, expected_key_id: str | None = None) -> tuple[str | None, str | None]:
    """(problem, key ARN) for the source's encryption key: it must be customer managed to be shared."""
    kind = "DB cluster" if desc.db_type == "cluster" else "DB instance"
    if not desc.storage_encrypted:
        return None, None
    key = describe_kms_key(kms, desc.kms_key_id or "")
    if key is None:
        return (f"KMS key {desc.kms_key_id} of {kind} {desc.identifier} cannot be described with the source "
                f"connection: allow kms:DescribeKey on it"), None
    if key.get("KeyManager") != "CUSTOMER":
        return (f"{kind} {desc.identifier} is encrypted with the AWS managed KMS key {key['Arn']} (aws/rds), which "
                f"cannot be shared with another account: copy a snapshot with a customer managed key, restore it "
                f"and migrate from that copy"), key["Arn"]
    if key.get("KeyState") != "Enabled":
        return f"KMS key {key['Arn']} of {kind} {desc.identifier} is {key.get('KeyState')}: enable it", key["Arn"]
    if expected_key_id and expected_key_id not in (key["Arn"], key["KeyId"]):
        expected = describe_kms_key(kms, expected_key_id)
        if expected is None or expected["Arn"] != key["Arn"]:
            return (f"source.kms_key_id is {expected_key_id}, but {kind} {desc.identifier} is encrypted with "
                    f"{key['Arn']}: set source.kms_key_id to {key['Arn']}"), key["Arn"]
    return None, key["Arn"]


def target_kms_problem(kms: Any, key_id: str | None, *, region: str) -> tuple[str | None, str | None]:
    if not key_id:
        return None, None
    key = describe_kms_key(kms, key_id)
    if key is None:
        return (f"target KMS key {key_id} was not found with the target connection: create it in the target "
                f"account ({region}) or fix target.kms_key_id"), None
    if key.get("KeyState") != "Enabled":
        return f"target KMS key {key['Arn']} is {key.get('KeyState')}: enable it", key["Arn"]
    key_region = parse_arn(key["Arn"], field="target KMS key").region
    if key_region != region:
        return f"target KMS key {key['Arn']} is in {key_region}, not {region}: use a key in {region}", key["Arn"]
    return None, key["Arn"]


def region_problem(source_arn: str, *, source_region: str, target_region: str, target_conn_hint: str = "target") -> str | None:
    arn_region = parse_arn(source_arn, field="source ARN").region
    for region, what in ((source_region, "the source connection"), (target_region, f"the {target_conn_hint} connection")):
        if region != arn_region:
            return (f"source {source_arn} is in {arn_region} but {what} uses {region}: a clone or snapshot copy stays "
                    f"in one region; set region_name to {arn_region} in that Airflow connection's extra")
    return None


def min_metric(cloudwatch: Any, *, metric: str, instance_identifier: str, start: datetime, end: datetime,
               period: int = 60) -> float | None:
    """The smallest value of an AWS/RDS instance metric between start and end, or None without datapoints."""
    response = cloudwatch.get_metric_data(
        MetricDataQueries=[{
            "Id": "m0",
            "MetricStat": {
                "Metric": {"Namespace": "AWS/RDS", "MetricName": metric,
                           "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": instance_identifier}]},
                "Period": period, "Stat": "Minimum",
            },
        }],
        StartTime=start, EndTime=end,
    )
    values = [v for result in response.get("MetricDataResults", []) for v in result.get("Values", [])]
    return min(values) if values else None


def storage_problem(cloudwatch: Any, desc: DbDescription, *, min_free_bytes: int, now: datetime | None = None,
                    lookback_minutes: int = 30) -> tuple[str | None, float | None]:
    """(problem, lowest free bytes seen): the writer must have room for WAL the slots will retain."""
    if min_free_bytes <= 0:
        return None, None
    metric = STORAGE_METRIC[desc.db_type]
    instance = desc.writer_instance or desc.identifier
    end = now or datetime.now(UTC)
    lowest = min_metric(cloudwatch, metric=metric, instance_identifier=instance,
                        start=end - timedelta(minutes=lookback_minutes), end=end)
    gib = 1024 ** 3
    if lowest is None:
        return (f"CloudWatch has no {metric} datapoints for DB instance {instance} in the last {lookback_minutes} "
                f"minutes, so WAL headroom cannot be checked: make sure the instance is running and reporting, or "
                f"set min_free_storage_bytes to 0 to skip this check"), None
    if lowest < min_free_bytes:
        return (f"{metric} of DB instance {instance} fell to {lowest / gib:.1f} GiB in the last {lookback_minutes} "
                f"minutes; the migration wants {min_free_bytes / gib:.1f} GiB free for WAL retained by the "
                f"replication slots until CDC catches up: add storage or a larger instance class, or lower "
                f"min_free_storage_bytes if the write rate is small"), lowest
    return None, lowest


def aurora_lsn_function_problem(conn: Any) -> str | None:
    """SQL check on the source: aurora_volume_logical_start_lsn() must exist to capture a clone's LSN."""
    # The same lookup capture_clone_lsn makes on the clone, made on the source ahead of time.
    if conn.execute(load("capture_find_aurora_function")).fetchone():
        return None
    return ("aurora_volume_logical_start_lsn() is not available on the source: apply the latest minor version "
            "of its Aurora PostgreSQL major version (the function ships in the highest minor of each major)")


@dataclass
class PreflightResult:
    facts: dict[str, Any]
    problems: list[str]
    logical_replication_problem: str | None = None
    logical_replication_fixable: bool = False

    @property
    def only_logical_replication(self) -> bool:
        """The one problem is rds.logical_replication, and the migration may set it itself."""
        return self.logical_replication_fixable and self.problems == [self.logical_replication_problem]

    def raise_if_failed(self) -> None:
        if self.problems:
            raise PreflightFailed(self.problems)


def preflight(
    *,
    source_rds: Any,
    source_kms: Any,
    source_cloudwatch: Any,
    target_rds: Any,
    target_kms: Any,
    db_type: str,
    source_identifier: str,
    source_kms_key_id: str | None = None,
    target_kms_key_id: str | None = None,
    target_identifier: str | None = None,
    target_parameter_group: str | None = None,
    migration_id: str | None = None,
    min_free_storage_bytes: int = 10 * 1024 ** 3,
    storage_lookback_minutes: int = 30,
    now: datetime | None = None,
) -> PreflightResult:
    """Every AWS precondition, read-only: collects all problems rather than stopping at the first."""
    check_db_type(db_type)
    check_identifier(source_identifier, field="source identifier")
    problems: list[str] = []
    desc = describe_db(source_rds, db_type=db_type, identifier=source_identifier)
    if desc is None:
        kind = "DB cluster" if db_type == "cluster" else "DB instance"
        field_name = "source.cluster_identifier" if db_type == "cluster" else "source.instance_identifier"
        raise PreflightFailed([f"{kind} {source_identifier} does not exist in {_where(source_rds)}: check "
                               f"{field_name} and the source connection's region"])
    facts: dict[str, Any] = {"source": desc.to_xcom()}
    for problem in (engine_problem(desc), status_problem(desc)):
        if problem:
            problems.append(problem)
    value = None
    if desc.parameter_group:
        value = get_parameter(source_rds, db_type=db_type, parameter_group=desc.parameter_group,
                              name=LOGICAL_REPLICATION)
    facts["logical_replication"] = value or "0"
    lr_problem = logical_replication_problem(desc, value)
    fixable = bool(lr_problem) and bool(desc.parameter_group) and not desc.parameter_group.startswith("default.")
    if lr_problem:
        problems.append(lr_problem)
    kms_problem, key_arn = source_kms_problem(source_kms, desc, expected_key_id=source_kms_key_id)
    facts["source_kms_key_arn"] = key_arn
    if kms_problem:
        problems.append(kms_problem)
    source_region = source_rds.meta.region_name
    target_region = target_rds.meta.region_name
    facts["region"] = parse_arn(desc.arn).region
    problem = region_problem(desc.arn, source_region=source_region, target_region=target_region)
    if problem:
        problems.append(problem)
    problem, target_key_arn = target_kms_problem(target_kms, target_kms_key_id, region=facts["region"])
    facts["target_kms_key_arn"] = target_key_arn
    if problem:
        problems.append(problem)
    if target_parameter_group and not parameter_group_exists(target_rds, db_type=db_type,
                                                             parameter_group=target_parameter_group):
        kind = "DB cluster parameter group" if db_type == "cluster" else "DB parameter group"
        problems.append(f"{kind} {target_parameter_group} does not exist in the target account: create it (family "
                        f"{parameter_group_family(desc.engine, desc.engine_version)}, rds.logical_replication=1) "
                        f"or fix target.parameter_group")
    if target_identifier:
        existing = describe_db(target_rds, db_type=db_type, identifier=target_identifier)
        if existing and (existing.tags.get(MIGRATION_TAG) != migration_id or existing.tags.get(SOURCE_TAG) != desc.arn):
            problems.append(f"{'DB cluster' if db_type == 'cluster' else 'DB instance'} {target_identifier} already "
                            f"exists in the target account and was not made by this migration: choose another "
                            f"target identifier or delete it")
    problem, lowest = storage_problem(source_cloudwatch, desc, min_free_bytes=min_free_storage_bytes, now=now,
                                      lookback_minutes=storage_lookback_minutes)
    facts["free_storage_bytes"] = lowest
    if problem:
        problems.append(problem)
    return PreflightResult(facts=facts, problems=problems, logical_replication_problem=lr_problem,
                           logical_replication_fixable=fixable)


def planned_logical_replication_change(source: dict[str, Any]) -> str:
    """What ``set_logical_replication`` will change after ``proceed``, for the preflight's report."""
    return (f"set rds.logical_replication=1 in parameter group {source.get('parameter_group')} and reboot the "
            f"writer {source.get('writer_instance') or source.get('identifier')} (task source_logical_replication_on, "
            f"after proceed)")


# ---------------------------------------------------------------------------------------------
# Waiting: checks the project's PollTrigger runs (they open their own clients)
# ---------------------------------------------------------------------------------------------

def db_available(rds: Any, *, db_type: str, identifier: str, writer_instance_identifier: str | None = None,
                 require_parameters_in_sync: bool = False) -> tuple[bool, dict[str, Any]]:
    """(done, payload): the cluster (and its writer) or instance is available; payload carries host and port."""
    desc = require_db(rds, db_type=db_type, identifier=identifier, field="the identifier the create task used")
    kind = "DB cluster" if db_type == "cluster" else "DB instance"
    if desc.status in TERMINAL_DB_STATUSES:
        raise AwsMigrationError(f"{kind} {identifier} is {desc.status!r}; it will not become available by itself: "
                                f"see its events (aws rds describe-events --source-identifier {identifier})")
    payload: dict[str, Any] = {"identifier": identifier, "status": desc.status, "host": desc.host, "port": desc.port}
    done = desc.status == "available"
    if db_type == "cluster" and writer_instance_identifier:
        writer = require_db(rds, db_type="instance", identifier=writer_instance_identifier,
                             field="the writer identifier the create task used")
        if writer.status in TERMINAL_DB_STATUSES:
            raise AwsMigrationError(f"writer {writer_instance_identifier} of DB cluster {identifier} is "
                                    f"{writer.status!r}: see its events")
        payload["writer_status"] = writer.status
        done = done and writer.status == "available"
    if require_parameters_in_sync:
        payload["parameter_apply_status"] = desc.parameter_apply_status
        done = done and desc.parameter_apply_status in (None, "in-sync")
    if done and not desc.host:
        done = False
    return done, payload


def check_db_available(*, aws_conn_id: str, db_type: str, identifier: str,
                       writer_instance_identifier: str | None = None,
                       require_parameters_in_sync: bool = False) -> tuple[bool, dict[str, Any]]:
    """Poll check (triggers.poll): opens an RDS client for the Airflow connection, then db_available."""
    from hooks.aws import aws_client

    return db_available(aws_client(aws_conn_id, "rds"), db_type=db_type, identifier=identifier,
                        writer_instance_identifier=writer_instance_identifier,
                        require_parameters_in_sync=require_parameters_in_sync)


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


def check_snapshot_available(*, aws_conn_id: str, snapshot_identifier: str) -> tuple[bool, dict[str, Any]]:
    from hooks.aws import aws_client

    return snapshot_available(aws_client(aws_conn_id, "rds"), snapshot_identifier=snapshot_identifier)


def endpoint_of(rds: Any, *, db_type: str, identifier: str) -> dict[str, Any]:
    """{host, port} of a cluster's writer endpoint or an instance's endpoint, read now (never configured)."""
    desc = require_db(rds, db_type=db_type, identifier=identifier, field="the identifier")
    if not desc.host:
        raise AwsMigrationError(f"{identifier} has no endpoint yet (status {desc.status!r}): wait until it is available")
    return {"host": desc.host, "port": int(desc.port or 5432)}


# ---------------------------------------------------------------------------------------------
# Sharing: RAM (clusters), snapshot attributes, KMS key policy
# ---------------------------------------------------------------------------------------------

def find_resource_shares(ram: Any, *, name: str) -> list[dict[str, Any]]:
    """Active or pending resource shares this account owns with exactly this name."""
    found = []
    for page in ram.get_paginator("get_resource_shares").paginate(resourceOwner="SELF", name=name):
        for share in page.get("resourceShares", []):
            if share.get("name") == name and share.get("status") in ("ACTIVE", "PENDING"):
                found.append(share)
    return found


def _associated(ram: Any, share_arn: str, association_type: str) -> set[str]:
    entities = set()
    pages = ram.get_paginator("get_resource_share_associations").paginate(
        associationType=association_type, resourceShareArns=[share_arn])
    for page in pages:
        for item in page.get("resourceShareAssociations", []):
            if item.get("status") in ("ASSOCIATED", "ASSOCIATING"):
                entities.add(item.get("associatedEntity"))
    return entities


def ensure_resource_share(ram: Any, *, name: str, resource_arn: str, principal: str) -> str:
    """The ARN of the RAM share ``name`` sharing ``resource_arn`` with account ``principal`` (made if missing)."""
    check_account_id(principal, field="target account id")
    parse_arn(resource_arn, field="resource_arn")
    if not name or len(name) > 255:
        raise ValueError(f"share name: expected 1 to 255 characters, got {name!r}")
    shares = find_resource_shares(ram, name=name)
    if len(shares) > 1:
        arns = ", ".join(s["resourceShareArn"] for s in shares)
        raise AwsMigrationError(f"several RAM shares are named {name}: {arns}; delete all but one and rerun")
    if shares:
        arn = shares[0]["resourceShareArn"]
        missing = []
        if resource_arn not in _associated(ram, arn, "RESOURCE"):
            missing.append(resource_arn)
        if principal not in _associated(ram, arn, "PRINCIPAL"):
            missing.append(f"account {principal}")
        if missing:
            raise AwsMigrationError(
                f"RAM share {name} ({arn}) exists but does not share {' and '.join(missing)}: delete it "
                f"(aws ram delete-resource-share --resource-share-arn {arn}) and rerun")
        return arn
    response = ram.create_resource_share(name=name, resourceArns=[resource_arn], principals=[principal],
                                         allowExternalPrincipals=True)
    return response["resourceShare"]["resourceShareArn"]


def accept_resource_share(ram: Any, *, share_arn: str) -> str:
    """Accept the target account's invitation to ``share_arn``; returns ACCEPTED or ASSOCIATED.

    Inside one AWS Organization with RAM sharing enabled there is no invitation: the share is
    already visible, which reads as ASSOCIATED.
    """
    parse_arn(share_arn, field="share_arn")
    invitations = []
    for page in ram.get_paginator("get_resource_share_invitations").paginate(resourceShareArns=[share_arn]):
        invitations.extend(page.get("resourceShareInvitations", []))
    if invitations:
        statuses = {inv.get("status") for inv in invitations}
        if "ACCEPTED" in statuses:
            return "ACCEPTED"
        pending = [inv for inv in invitations if inv.get("status") == "PENDING"]
        if pending:
            ram.accept_resource_share_invitation(
                resourceShareInvitationArn=pending[0]["resourceShareInvitationArn"])
            return "ACCEPTED"
        raise AwsMigrationError(
            f"the invitation to RAM share {share_arn} is {', '.join(sorted(statuses))}: delete the share in the "
            f"source account and rerun, so a fresh invitation is sent")
    for page in ram.get_paginator("get_resource_shares").paginate(resourceOwner="OTHER-ACCOUNTS",
                                                                   resourceShareArns=[share_arn]):
        if any(s.get("resourceShareArn") == share_arn and s.get("status") == "ACTIVE"
               for s in page.get("resourceShares", [])):
            return "ASSOCIATED"
    raise AwsMigrationError(
        f"no invitation to RAM share {share_arn} has reached the target account yet: rerun in a minute; if it "
        f"never arrives, check that the share names the target account and allows external principals")


def kms_statement_sid(account_id: str) -> str:
    """The fixed Sid of the one statement this migration adds to a key policy for a target account."""
    return f"PgAccountMigrationAllow{check_account_id(account_id)}"


def _key_statement(partition: str, account_id: str) -> dict[str, Any]:
    return {
        "Sid": kms_statement_sid(account_id),
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
        "Action": list(KMS_SHARE_ACTIONS),
        "Resource": "*",
    }


def _canonical(statement: dict[str, Any]) -> str:
    normal = copy.deepcopy(statement)
    if isinstance(normal.get("Action"), list):
        normal["Action"] = sorted(normal["Action"])
    return json.dumps(normal, sort_keys=True)


def _key_policy(kms: Any, key_id: str) -> tuple[str, dict[str, Any]]:
    key = describe_kms_key(kms, key_id)
    if key is None:
        raise AwsMigrationError(f"KMS key {key_id} was not found with the source connection: check source.kms_key_id")
    policy = json.loads(kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"])
    return key["Arn"], policy


def grant_key_to_account(kms: Any, *, key_id: str, account_id: str) -> bool:
    """Add (or repair) this migration's one statement letting ``account_id`` use the key; True if changed.

    Every other statement is kept as it is, and the statement is never duplicated.
    """
    key_arn, policy = _key_policy(kms, key_id)
    wanted = _key_statement(parse_arn(key_arn).partition, account_id)
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    ours = [s for s in statements if s.get("Sid") == wanted["Sid"]]
    if len(ours) == 1 and _canonical(ours[0]) == _canonical(wanted):
        return False
    kept = [s for s in statements if s.get("Sid") != wanted["Sid"]]
    policy["Statement"] = [*kept, wanted]
    kms.put_key_policy(KeyId=key_arn, PolicyName="default", Policy=json.dumps(policy))
    return True


def revoke_key_from_account(kms: Any, *, key_id: str, account_id: str) -> bool:
    """Remove only the statement grant_key_to_account added; True if the policy changed."""
    sid = kms_statement_sid(account_id)
    key_arn, policy = _key_policy(kms, key_id)
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    kept = [s for s in statements if s.get("Sid") != sid]
    if len(kept) == len(statements):
        return False
    policy["Statement"] = kept
    kms.put_key_policy(KeyId=key_arn, PolicyName="default", Policy=json.dumps(policy))
    return True


def delete_resource_share(ram: Any, *, name: str) -> list[str]:
    """Delete the shares named ``name`` (what ensure_resource_share made); returns the deleted ARNs."""
    deleted = []
    for share in find_resource_shares(ram, name=name):
        try:
            ram.delete_resource_share(resourceShareArn=share["resourceShareArn"])
        except ClientError as exc:
            if error_code(exc) != "UnknownResourceException":
                raise
        deleted.append(share["resourceShareArn"])
    return deleted


# ---------------------------------------------------------------------------------------------
# Aurora clone path (target account)
# ---------------------------------------------------------------------------------------------

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
) -> dict[str, Any]:
    """Copy-on-write clone of the shared source cluster, or the clone an earlier try made."""
    check_identifier(cluster_identifier, field="target.cluster_identifier")
    source = parse_arn(source_cluster_arn, field="source_cluster_arn")
    if source.service != "rds" or not source.resource.startswith("cluster:"):
        raise ValueError(f"source_cluster_arn: expected an RDS cluster ARN, got {source_cluster_arn!r}")
    existing = describe_db(rds, db_type="cluster", identifier=cluster_identifier)
    if existing is None:
        kwargs: dict[str, Any] = {
            "DBClusterIdentifier": cluster_identifier,
            "SourceDBClusterIdentifier": source_cluster_arn,
            "RestoreType": "copy-on-write",
            "UseLatestRestorableTime": True,
            "Tags": migration_tags(migration_id, source_cluster_arn),
        }
        if kms_key_id:
            kwargs["KmsKeyId"] = kms_key_id
        if subnet_group:
            kwargs["DBSubnetGroupName"] = subnet_group
        if security_group_ids:
            kwargs["VpcSecurityGroupIds"] = list(security_group_ids)
        if parameter_group:
            kwargs["DBClusterParameterGroupName"] = parameter_group
        try:
            cluster = rds.restore_db_cluster_to_point_in_time(**kwargs)["DBCluster"]
        except ClientError as exc:
            if error_code(exc) != "DBClusterAlreadyExistsFault":
                raise
        else:
            return {"cluster_identifier": cluster_identifier, "cluster_arn": cluster["DBClusterArn"],
                    "status": cluster.get("Status"), "created": True}
        existing = require_db(rds, db_type="cluster", identifier=cluster_identifier,
                               field="target.cluster_identifier")
    _require_ours("DB cluster", cluster_identifier, existing.tags, migration_id, source_cluster_arn,
                  "target.cluster_identifier")
    return {"cluster_identifier": cluster_identifier, "cluster_arn": existing.arn, "status": existing.status,
            "created": False}


def ensure_cluster_writer(
    rds: Any,
    *,
    migration_id: str,
    cluster_identifier: str,
    instance_identifier: str,
    instance_class: str | None = None,
    db_parameter_group: str | None = None,
) -> dict[str, Any]:
    """The clone's writer instance (a clone is created without instances), or the one an earlier try made."""
    check_identifier(instance_identifier, field="writer instance identifier")
    cluster = require_db(rds, db_type="cluster", identifier=cluster_identifier, field="target.cluster_identifier")
    existing = describe_db(rds, db_type="instance", identifier=instance_identifier)
    if existing is None:
        kwargs: dict[str, Any] = {
            "DBInstanceIdentifier": instance_identifier,
            "DBClusterIdentifier": cluster_identifier,
            "Engine": cluster.engine,
            "DBInstanceClass": instance_class or DEFAULT_INSTANCE_CLASS,
            "Tags": migration_tags(migration_id, cluster.tags.get(SOURCE_TAG, cluster.arn)),
        }
        if db_parameter_group:
            kwargs["DBParameterGroupName"] = db_parameter_group
        try:
            instance = rds.create_db_instance(**kwargs)["DBInstance"]
            return {"instance_identifier": instance_identifier, "instance_arn": instance["DBInstanceArn"],
                    "status": instance.get("DBInstanceStatus"), "created": True}
        except ClientError as exc:
            if error_code(exc) != "DBInstanceAlreadyExists":
                raise
        existing = require_db(rds, db_type="instance", identifier=instance_identifier,
                               field="writer instance identifier")
    if existing.cluster_identifier != cluster_identifier:
        raise AwsMigrationError(
            f"DB instance {instance_identifier} already exists outside DB cluster {cluster_identifier} (in "
            f"{existing.cluster_identifier or 'no cluster'}): choose another writer instance identifier")
    return {"instance_identifier": instance_identifier, "instance_arn": existing.arn, "status": existing.status,
            "created": False}


# ---------------------------------------------------------------------------------------------
# RDS snapshot path
# ---------------------------------------------------------------------------------------------

def _describe_snapshot(rds: Any, snapshot_identifier: str) -> dict[str, Any] | None:
    try:
        snapshots = rds.describe_db_snapshots(DBSnapshotIdentifier=snapshot_identifier)["DBSnapshots"]
    except ClientError as exc:
        if error_code(exc) == "DBSnapshotNotFound":
            return None
        raise
    return snapshots[0] if snapshots else None


def _snapshot_tags(snapshot: dict[str, Any]) -> dict[str, str]:
    return _tag_dict(snapshot.get("TagList"))


def ensure_db_snapshot(rds: Any, *, migration_id: str, instance_identifier: str,
                       snapshot_identifier: str) -> dict[str, Any]:
    """A manual snapshot of the source instance, or the one an earlier try made."""
    check_identifier(instance_identifier, field="source.instance_identifier")
    check_identifier(snapshot_identifier, field="snapshot identifier", max_length=255)
    source = require_db(rds, db_type="instance", identifier=instance_identifier, field="source.instance_identifier")
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
        _require_ours("DB snapshot", snapshot_identifier, _snapshot_tags(snapshot), migration_id, source.arn,
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
        kwargs: dict[str, Any] = {"SourceDBSnapshotIdentifier": source_snapshot_arn,
                                  "TargetDBSnapshotIdentifier": snapshot_identifier,
                                  "Tags": migration_tags(migration_id, source_snapshot_arn)}
        if kms_key_id:
            kwargs["KmsKeyId"] = kms_key_id
        snapshot = rds.copy_db_snapshot(**kwargs)["DBSnapshot"]
    else:
        _require_ours("DB snapshot", snapshot_identifier, _snapshot_tags(snapshot), migration_id,
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
    existing = describe_db(rds, db_type="instance", identifier=instance_identifier)
    if existing is None:
        kwargs: dict[str, Any] = {"DBInstanceIdentifier": instance_identifier,
                                  "DBSnapshotIdentifier": snapshot_identifier,
                                  "Tags": migration_tags(migration_id, source_arn)}
        if instance_class:
            kwargs["DBInstanceClass"] = instance_class
        if subnet_group:
            kwargs["DBSubnetGroupName"] = subnet_group
        if security_group_ids:
            kwargs["VpcSecurityGroupIds"] = list(security_group_ids)
        if parameter_group:
            kwargs["DBParameterGroupName"] = parameter_group
        try:
            instance = rds.restore_db_instance_from_db_snapshot(**kwargs)["DBInstance"]
            return {"instance_identifier": instance_identifier, "instance_arn": instance["DBInstanceArn"],
                    "status": instance.get("DBInstanceStatus"), "created": True}
        except ClientError as exc:
            if error_code(exc) != "DBInstanceAlreadyExists":
                raise
        existing = require_db(rds, db_type="instance", identifier=instance_identifier,
                               field="target.instance_identifier")
    _require_ours("DB instance", instance_identifier, existing.tags, migration_id, source_arn,
                  "target.instance_identifier")
    return {"instance_identifier": instance_identifier, "instance_arn": existing.arn, "status": existing.status,
            "created": False}


class RdsLogReader:
    """``reader()`` returns the full text of an RDS instance's log files, oldest file first.

    Each file is read in portions from Marker "0", following the returned Marker while
    AdditionalDataPending is true, so a "redo done at X/Y" line is found wherever it falls.
    """

    def __init__(self, rds: Any, instance_identifier: str, *, lines_per_portion: int = 10000,
                 since_epoch_ms: int | None = None):
        check_identifier(instance_identifier, field="instance_identifier")
        if lines_per_portion < 1:
            raise ValueError(f"lines_per_portion: expected a positive number, got {lines_per_portion}")
        self.rds = rds
        self.instance_identifier = instance_identifier
        self.lines_per_portion = lines_per_portion
        self.since_epoch_ms = since_epoch_ms

    def log_files(self) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"DBInstanceIdentifier": self.instance_identifier}
        if self.since_epoch_ms is not None:
            kwargs["FileLastWritten"] = self.since_epoch_ms
        files = []
        for page in self.rds.get_paginator("describe_db_log_files").paginate(**kwargs):
            files.extend(page.get("DescribeDBLogFiles", []))
        return sorted(files, key=lambda f: (f.get("LastWritten", 0), f.get("LogFileName", "")))

    def read_file(self, name: str) -> str:
        parts: list[str] = []
        marker = "0"
        while True:
            response = self.rds.download_db_log_file_portion(
                DBInstanceIdentifier=self.instance_identifier, LogFileName=name, Marker=marker,
                NumberOfLines=self.lines_per_portion)
            parts.append(response.get("LogFileData") or "")
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


# ---------------------------------------------------------------------------------------------
# Cutover: blocking writes at the security group, DNS, stopping the source
# ---------------------------------------------------------------------------------------------

_SOURCE_KEYS = ("IpRanges", "Ipv6Ranges", "UserIdGroupPairs", "PrefixListIds")


def _split_permission(permission: dict[str, Any]) -> list[dict[str, Any]]:
    """One IpPermission per source, so each rule can be kept, revoked and put back on its own."""
    base = {k: permission[k] for k in ("IpProtocol", "FromPort", "ToPort") if k in permission}
    pieces = []
    for key in _SOURCE_KEYS:
        for source in permission.get(key) or []:
            clean = {k: v for k, v in source.items() if k != "PeeringStatus"}
            pieces.append({**base, key: [clean]})
    return pieces


def _network_kept(cidr: str, keep: Sequence[ipaddress._BaseNetwork]) -> bool:
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False
    return any(network.version == k.version and network.subnet_of(k) for k in keep)


def _is_kept(piece: dict[str, Any], keep_groups: set[str], keep_networks: Sequence[ipaddress._BaseNetwork]) -> bool:
    if piece.get("UserIdGroupPairs"):
        return piece["UserIdGroupPairs"][0].get("GroupId") in keep_groups
    if piece.get("IpRanges"):
        return _network_kept(piece["IpRanges"][0].get("CidrIp", ""), keep_networks)
    if piece.get("Ipv6Ranges"):
        return _network_kept(piece["Ipv6Ranges"][0].get("CidrIpv6", ""), keep_networks)
    return False


def _without_descriptions(piece: dict[str, Any]) -> dict[str, Any]:
    bare = copy.deepcopy(piece)
    for key in _SOURCE_KEYS:
        for source in bare.get(key) or []:
            source.pop("Description", None)
    return bare


def _check_write_block_inputs(security_group_ids: Sequence[str], keep_security_group_ids: Sequence[str],
                              keep_cidrs: Sequence[str]) -> list[ipaddress._BaseNetwork]:
    if not security_group_ids:
        raise ValueError("security_group_ids: name the source's security groups (source.security_group_ids)")
    if not keep_security_group_ids and not keep_cidrs:
        raise ValueError("keep_security_group_ids and keep_cidrs are both empty: the replication path (the DMS "
                         "instance's security group or the target's CIDRs) would be blocked too")
    for group in (*security_group_ids, *keep_security_group_ids):
        if not isinstance(group, str) or not group.startswith("sg-"):
            raise ValueError(f"security group ids: expected ids like sg-0123abcd, got {group!r}")
    networks = []
    for cidr in keep_cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            raise ValueError(f"keep_cidrs: expected CIDR blocks like 10.0.0.0/16, got {cidr!r}") from None
    return networks


def plan_write_block(ec2: Any, *, security_group_ids: Sequence[str], keep_security_group_ids: Sequence[str] = (),
                     keep_cidrs: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The inbound rules block_source_writes would revoke, as ``[{"GroupId", "IpPermissions"}]``; changes nothing.

    Kept: rules whose source is one of ``keep_security_group_ids`` (e.g. the DMS replication
    instance's group) or a network inside one of ``keep_cidrs`` (e.g. the target's subnets and the
    Airflow workers that run the cutover's checks on the source).
    """
    networks = _check_write_block_inputs(security_group_ids, keep_security_group_ids, keep_cidrs)
    keep_groups = set(keep_security_group_ids)
    plan: list[dict[str, Any]] = []
    for group in ec2.describe_security_groups(GroupIds=list(security_group_ids))["SecurityGroups"]:
        pieces = [p for perm in group.get("IpPermissions", []) for p in _split_permission(perm)
                  if not _is_kept(p, keep_groups, networks)]
        if pieces:
            plan.append({"GroupId": group["GroupId"], "IpPermissions": pieces})
    return plan


class WriteBlockError(AwsMigrationError):
    """Revoking failed part way; ``revoked`` holds what was revoked, for restore_source_writes."""

    def __init__(self, message: str, revoked: list[dict[str, Any]]):
        super().__init__(message)
        self.revoked = revoked


def revoke_rules(ec2: Any, plan: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Revoke the planned rules, one call per security group; returns what was revoked."""
    revoked: list[dict[str, Any]] = []
    for group in plan:
        try:
            # Sent exactly as described (descriptions too): that is what matches the existing rules.
            ec2.revoke_security_group_ingress(GroupId=group["GroupId"], IpPermissions=group["IpPermissions"])
        except ClientError as exc:
            raise WriteBlockError(f"revoking inbound rules of {group['GroupId']} failed ({error_code(exc)}: {exc}); "
                                  f"rules revoked before it are in .revoked", revoked) from exc
        revoked.append(group)
    return revoked


def block_source_writes(ec2: Any, *, security_group_ids: Sequence[str], keep_security_group_ids: Sequence[str] = (),
                        keep_cidrs: Sequence[str] = (),
                        previously_revoked: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Revoke every inbound rule of the source's security groups except the replication path's.

    Returns the exact revoked rules (descriptions included) merged with ``previously_revoked``:
    persist it, it is what restore_source_writes puts back (SecurityGroupWriteBlock persists the
    plan before revoking). Existing connections are not cut by a security group change; the
    cutover's drain ends them on the PostgreSQL side.
    """
    plan = plan_write_block(ec2, security_group_ids=security_group_ids,
                            keep_security_group_ids=keep_security_group_ids, keep_cidrs=keep_cidrs)
    return merge_revoked(previously_revoked or [], revoke_rules(ec2, plan))


def merge_revoked(*records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Union of revoked-rule records, each rule once, grouped by security group."""
    merged: dict[str, list[dict[str, Any]]] = {}
    seen: set[tuple[str, str]] = set()
    for record in records:
        for group in record:
            for piece in group.get("IpPermissions", []):
                key = (group["GroupId"], json.dumps(_without_descriptions(piece), sort_keys=True))
                if key in seen:
                    continue
                seen.add(key)
                merged.setdefault(group["GroupId"], []).append(piece)
    return [{"GroupId": gid, "IpPermissions": pieces} for gid, pieces in merged.items()]


def restore_source_writes(ec2: Any, revoked: Sequence[dict[str, Any]]) -> int:
    """Authorize the revoked rules again; a rule that is already there is fine. Returns rules re-added."""
    added = 0
    for group in revoked:
        for piece in group.get("IpPermissions", []):
            try:
                ec2.authorize_security_group_ingress(GroupId=group["GroupId"], IpPermissions=[piece])
            except ClientError as exc:
                if error_code(exc) != "InvalidPermission.Duplicate":
                    raise
            else:
                added += 1
    return added


@dataclass
class SecurityGroupWriteBlock:
    """The cutover's write fence at the network (migration.cutover.WriteFence): prepare, block, unblock.

    ``persist`` is called with the rules about to be revoked before any is revoked, so the abort
    path can put them back even if this process dies mid-way (rules never revoked are skipped then).
    Sessions already open are not cut by a security group; the cutover's drain ends them.
    """

    ec2: Any
    security_group_ids: Sequence[str]
    keep_security_group_ids: Sequence[str] = ()
    keep_cidrs: Sequence[str] = ()
    persist: Callable[[list[dict[str, Any]]], None] | None = None
    revoked: list[dict[str, Any]] = field(default_factory=list)
    name: str = "security_group"

    def prepare(self) -> dict[str, Any]:
        """Check the inputs and the groups, and report what block() would revoke; changes nothing."""
        plan = plan_write_block(self.ec2, security_group_ids=self.security_group_ids,
                                keep_security_group_ids=self.keep_security_group_ids, keep_cidrs=self.keep_cidrs)
        return {"security_groups": list(self.security_group_ids),
                "rules_to_revoke": sum(len(g["IpPermissions"]) for g in plan)}

    def block(self) -> dict[str, Any]:
        plan = plan_write_block(self.ec2, security_group_ids=self.security_group_ids,
                                keep_security_group_ids=self.keep_security_group_ids, keep_cidrs=self.keep_cidrs)
        if self.persist:
            self.persist(merge_revoked(self.revoked, plan))
        try:
            revoked = revoke_rules(self.ec2, plan)
        except WriteBlockError as exc:
            self.revoked = merge_revoked(self.revoked, exc.revoked)
            raise
        self.revoked = merge_revoked(self.revoked, revoked)
        return {"revoked": self.revoked, "rules": sum(len(g["IpPermissions"]) for g in self.revoked)}

    def unblock(self) -> dict[str, Any]:
        return {"restored": restore_source_writes(self.ec2, self.revoked)}


@dataclass
class Route53TargetOpener:
    """The cutover's target opener on AWS (migration.cutover.TargetOpener): the CNAME applications use
    now points at the target's writer endpoint, and, with ``wait``, Route53 has it INSYNC.

    ``prepare()`` reads the record as it is (``state``, journaled at the commit point) so that ``revert()``
    can put it back; ``revert()`` returns True only once Route53 reports the revert INSYNC.
    """

    route53: Any
    hosted_zone_id: str
    record_name: str
    target_host: str
    ttl: int = 30
    wait: bool = True
    name: str = "dns"
    external: bool = True
    state: dict[str, Any] | None = None
    wait_delay: int = 2
    wait_attempts: int = 90

    def prepare(self) -> dict[str, Any]:
        record = current_record(self.route53, hosted_zone_id=self.hosted_zone_id, record_name=self.record_name)
        if record and record.get("Type") != "CNAME":
            raise AwsMigrationError(f"{self.record_name} in hosted zone {self.hosted_zone_id} is a "
                                    f"{record.get('Type')} record, not a CNAME: point cutover.dns_record_name at a CNAME")
        self.state = {"record_name": self.record_name, "previous": record}
        return {"record_name": self.record_name,
                "previous": record["ResourceRecords"][0]["Value"] if record and record.get("ResourceRecords") else None}

    def open(self) -> dict[str, Any]:
        change = upsert_cname(self.route53, hosted_zone_id=self.hosted_zone_id, record_name=self.record_name,
                              target_host=self.target_host, ttl=self.ttl)
        if self.wait:
            wait_dns_in_sync(self.route53, change_id=change["change_id"], delay=self.wait_delay,
                             max_attempts=self.wait_attempts)
            change["status"] = "INSYNC"
        return {**change, "record_name": self.record_name}

    def revert(self) -> bool:
        """Put the record back as ``prepare()`` found it and wait until that is INSYNC."""
        if self.state is None:
            return False
        previous = self.state["previous"]
        if previous is None:
            record = current_record(self.route53, hosted_zone_id=self.hosted_zone_id, record_name=self.record_name)
            if record is None:
                return True
            change = {"Action": "DELETE", "ResourceRecordSet": record}
        else:
            change = {"Action": "UPSERT", "ResourceRecordSet": previous}
        info = self.route53.change_resource_record_sets(
            HostedZoneId=self.hosted_zone_id,
            ChangeBatch={"Comment": "migration cutover reverted", "Changes": [change]})["ChangeInfo"]
        wait_dns_in_sync(self.route53, change_id=info["Id"], delay=self.wait_delay, max_attempts=self.wait_attempts)
        return True


def current_record(route53: Any, *, hosted_zone_id: str, record_name: str) -> dict[str, Any] | None:
    """The record set named ``record_name`` (any type), or None."""
    wanted = record_name.rstrip(".") + "."
    response = route53.list_resource_record_sets(HostedZoneId=hosted_zone_id, StartRecordName=wanted, MaxItems="1")
    for record in response.get("ResourceRecordSets", []):
        if record.get("Name", "").rstrip(".").lower() == wanted.rstrip(".").lower():
            return record
    return None


def upsert_cname(route53: Any, *, hosted_zone_id: str, record_name: str, target_host: str,
                 ttl: int = 30) -> dict[str, Any]:
    """Point the CNAME ``record_name`` at ``target_host``; returns {change_id, previous, status}."""
    if not hosted_zone_id:
        raise ValueError("hosted_zone_id: the Route53 hosted zone id is required (cutover.dns_zone_id)")
    if not record_name or not target_host:
        raise ValueError(f"record_name and target_host are required, got {record_name!r} and {target_host!r}")
    if not 0 <= int(ttl) <= 2147483647:
        raise ValueError(f"ttl: expected seconds from 0, got {ttl!r}")
    existing = current_record(route53, hosted_zone_id=hosted_zone_id, record_name=record_name)
    if existing and existing.get("Type") != "CNAME":
        raise AwsMigrationError(f"{record_name} in hosted zone {hosted_zone_id} is a {existing.get('Type')} record, "
                                f"not a CNAME: remove it or point cutover.dns_record_name at a CNAME")
    previous = existing["ResourceRecords"][0]["Value"] if existing and existing.get("ResourceRecords") else None
    change = route53.change_resource_record_sets(
        HostedZoneId=hosted_zone_id,
        ChangeBatch={
            "Comment": f"migration cutover to {target_host}",
            "Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
                "Name": record_name, "Type": "CNAME", "TTL": int(ttl),
                "ResourceRecords": [{"Value": target_host}]}}],
        },
    )["ChangeInfo"]
    return {"change_id": change["Id"], "status": change.get("Status"), "previous": previous, "target": target_host}


def wait_dns_in_sync(route53: Any, *, change_id: str, delay: int = 2, max_attempts: int = 90) -> None:
    """Block until Route53 reports the change INSYNC on all its name servers."""
    route53.get_waiter("resource_record_sets_changed").wait(
        Id=change_id, WaiterConfig={"Delay": delay, "MaxAttempts": max_attempts})


def stop_db(rds: Any, *, db_type: str, identifier: str) -> str:
    """Stop the source cluster or instance after a successful cutover; its data stays untouched."""
    desc = require_db(rds, db_type=db_type, identifier=identifier, field="the source identifier")
    if desc.status in ("stopped", "stopping"):
        return desc.status
    if desc.status != "available":
        raise AwsMigrationError(f"{identifier} is {desc.status!r}; it can be stopped only when available")
    if db_type == "cluster":
        rds.stop_db_cluster(DBClusterIdentifier=identifier)
    else:
        rds.stop_db_instance(DBInstanceIdentifier=identifier)
    return "stopping"
