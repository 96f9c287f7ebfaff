"""AWS preflight: every precondition of the AWS side, read-only, all problems at once, each with its fix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from migration import sql as sqlfiles
from migration.aws.common import (
    MIGRATION_TAG,
    SOURCE_TAG,
    AwsMigrationError,
    DbDescription,
    check_identifier,
    db_kind,
    describe_kms_key,
    error_code,
    parameter_group_family,
    parse_arn,
    version_tuple,
    where,
)
from migration.aws.parameters import LOGICAL_REPLICATION, get_parameter, parameter_group_exists


class PreflightFailed(AwsMigrationError):
    """One or more preflight checks failed; ``problems`` lists each with its fix."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__(f"AWS preflight found {len(self.problems)} problem(s):\n- " + "\n- ".join(self.problems))


def engine_problem(desc: DbDescription) -> str | None:
    kind = desc.kind
    if desc.engine != kind.engine:
        return (f"{kind.label} {desc.identifier} runs engine {desc.engine!r}; this path needs {kind.engine} "
                f"({kind.engine_label}): check the source identifier and initial_load")
    version = version_tuple(desc.engine_version)
    if version is None or version < kind.min_version:
        return (f"{kind.label} {desc.identifier} runs {kind.engine} {desc.engine_version}; CDC from it needs "
                f"{kind.min_version_label} or later: upgrade it (aws rds modify-{kind.cli_noun} "
                f"--{kind.cli_noun}-identifier {desc.identifier} --engine-version <newer version> --apply-immediately)")
    return None


def status_problem(desc: DbDescription) -> str | None:
    if desc.status != "available":
        return (f"{desc.kind.label} {desc.identifier} is {desc.status!r}, not available: start it or wait until it "
                f"is available")
    return None


def logical_replication_problem(desc: DbDescription, value: str | None) -> str | None:
    """None when rds.logical_replication is 1 and applied; else the exact change to make."""
    kind = desc.kind
    group_kind = kind.parameter_group_label
    reboot = f"aws rds reboot-db-instance --db-instance-identifier {desc.writer_instance}"
    if value == "1":
        if desc.parameter_apply_status and desc.parameter_apply_status != "in-sync":
            return (f"rds.logical_replication=1 is set in {group_kind} {desc.parameter_group} of {kind.label} "
                    f"{desc.identifier} but not applied ({desc.parameter_apply_status}): reboot the writer ({reboot})")
        return None
    group = desc.parameter_group or "(none)"
    if group.startswith("default."):
        family = parameter_group_family(desc.engine, desc.engine_version)
        attach = (f"aws rds modify-{kind.cli_noun} --{kind.cli_noun}-identifier {desc.identifier} "
                  f"--{kind.parameter_group_cli}-name <new group>")
        return (f"{kind.label} {desc.identifier} uses the default {group_kind} {group}, where rds.logical_replication "
                f"is {value or '0'} and which cannot be changed: create a custom {group_kind} of family {family} "
                f"with rds.logical_replication=1, attach it ({attach}), then reboot the writer ({reboot})")
    return (f"rds.logical_replication is {value or '0 (default)'} in {group_kind} {group} of {kind.label} "
            f"{desc.identifier}: run `aws rds modify-{kind.parameter_group_cli} --{kind.parameter_group_cli}-name "
            f"{group} --parameters ParameterName=rds.logical_replication,ParameterValue=1,ApplyMethod=pending-reboot`, "
            f"then reboot the writer ({reboot}); or set set_logical_replication: true in the migration config to let "
            f"the migration do both")


def source_kms_problem(kms: Any, desc: DbDescription, *,
                       expected_key_id: str | None = None) -> tuple[str | None, str | None]:
    """(problem, key ARN) for the source's encryption key: it must be customer managed to be shared."""
    kind = desc.kind
    if not desc.storage_encrypted:
        return None, None
    key = describe_kms_key(kms, desc.kms_key_id or "")
    if key is None:
        return (f"KMS key {desc.kms_key_id} of {kind.label} {desc.identifier} cannot be described with the source "
                f"connection: allow kms:DescribeKey on it"), None
    if key.get("KeyManager") != "CUSTOMER":
        return (f"{kind.label} {desc.identifier} is encrypted with the AWS managed KMS key {key['Arn']} (aws/rds), "
                f"which cannot be shared with another account: copy a snapshot with a customer managed key, restore "
                f"it and migrate from that copy"), key["Arn"]
    if key.get("KeyState") != "Enabled":
        return f"KMS key {key['Arn']} of {kind.label} {desc.identifier} is {key.get('KeyState')}: enable it", key["Arn"]
    if expected_key_id and expected_key_id not in (key["Arn"], key["KeyId"]):
        expected = describe_kms_key(kms, expected_key_id)
        if expected is None or expected["Arn"] != key["Arn"]:
            return (f"source.kms_key_id is {expected_key_id}, but {kind.label} {desc.identifier} is encrypted with "
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


# The account roles DMS's API needs (DMS User Guide, "IAM roles to use with the AWS CLI and AWS DMS
# API"): creating a replication instance uses dms-vpc-role, task logging (Logging.EnableLogging)
# dms-cloudwatch-logs-role. Their trust policies ship in include/iam/<role>.json.
DMS_ACCOUNT_ROLES = {
    "dms-vpc-role": "arn:aws:iam::aws:policy/service-role/AmazonDMSVPCManagementRole",
    "dms-cloudwatch-logs-role": "arn:aws:iam::aws:policy/service-role/AmazonDMSCloudWatchLogsRole",
}


def dms_account_role_problems(iam: Any) -> list[str]:
    """One problem per DMS account role missing from the account of ``iam``, with the commands that create it."""
    problems = []
    for role, managed_policy in DMS_ACCOUNT_ROLES.items():
        try:
            iam.get_role(RoleName=role)
        except ClientError as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            problems.append(
                f"IAM role {role} does not exist in the target account; DMS needs it (cdc_engine: dms): create it "
                f"once per account with `aws iam create-role --role-name {role} --assume-role-policy-document "
                f"file://include/iam/{role}.json` and `aws iam attach-role-policy --role-name {role} --policy-arn "
                f"{managed_policy}`")
    return problems


def target_parameter_group_problem(target_rds: Any, desc: DbDescription, group: str, *,
                                   check_value: bool = True) -> str | None:
    """The target's parameter group must exist and (``check_value``: before the target is made) hold
    rds.logical_replication=1.

    The clone (or restored instance) starts with the source's logical replication slots in place,
    and PostgreSQL refuses to start with logical slots and logical decoding off.
    """
    kind = desc.kind
    family = parameter_group_family(desc.engine, desc.engine_version)
    if not parameter_group_exists(target_rds, db_type=kind.db_type, parameter_group=group):
        return (f"{kind.parameter_group_label} {group} does not exist in the target account: create it (family "
                f"{family}, rds.logical_replication=1) or fix target.parameter_group")
    value = get_parameter(target_rds, db_type=kind.db_type, parameter_group=group, name=LOGICAL_REPLICATION)
    if value == "1" or not check_value:
        return None
    return (f"rds.logical_replication is {value or '0 (default)'} in {kind.parameter_group_label} {group} "
            f"(target.parameter_group, target account); the target starts with the source's replication slots "
            f"and PostgreSQL refuses to start with logical slots and logical decoding off: run `aws rds "
            f"modify-{kind.parameter_group_cli} --{kind.parameter_group_cli}-name {group} --parameters "
            f"ParameterName=rds.logical_replication,ParameterValue=1,ApplyMethod=pending-reboot` in the target "
            f"account, or name a group of family {family} that has it")


def region_problem(source_arn: str, *, source_region: str, target_region: str,
                   target_conn_hint: str = "target") -> str | None:
    arn_region = parse_arn(source_arn, field="source ARN").region
    for region, what in ((source_region, "the source connection"),
                         (target_region, f"the {target_conn_hint} connection")):
        if region != arn_region:
            return (f"source {source_arn} is in {arn_region} but {what} uses {region}: a clone or snapshot copy "
                    f"stays in one region; set region_name to {arn_region} in that Airflow connection's extra")
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
    metric = desc.kind.storage_metric
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
    if conn.execute(sqlfiles.load("capture_find_aurora_function")).fetchone():
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


@dataclass(frozen=True)
class AwsPreflightChecks:
    """What the AWS preflight checks for one migration, from its config; empty strings mean "not given"."""

    db_type: str
    source_identifier: str
    migration_id: str | None = None
    source_kms_key_id: str | None = None
    target_kms_key_id: str | None = None
    target_identifier: str | None = None
    target_parameter_group: str | None = None
    # A clone or a snapshot shares the source's storage (and its key) with the target account; a dump does not.
    shares_storage: bool = True
    min_free_storage_bytes: int = 10 * 1024 ** 3
    storage_lookback_minutes: int = 30

    def __post_init__(self) -> None:
        db_kind(self.db_type)
        for name in ("source_kms_key_id", "target_kms_key_id", "target_identifier", "target_parameter_group"):
            if getattr(self, name) == "":
                object.__setattr__(self, name, None)


def preflight(*, source_rds: Any, source_kms: Any, source_cloudwatch: Any, target_rds: Any, target_kms: Any,
              checks: AwsPreflightChecks, now: datetime | None = None) -> PreflightResult:
    """Every AWS precondition, read-only: collects all problems rather than stopping at the first."""
    kind = db_kind(checks.db_type)
    check_identifier(checks.source_identifier, field="source identifier")
    problems: list[str] = []
    desc = kind.describe(source_rds, checks.source_identifier)
    if desc is None:
        raise PreflightFailed([f"{kind.label} {checks.source_identifier} does not exist in {where(source_rds)}: "
                               f"check {kind.config_field} and the source connection's region"])
    facts: dict[str, Any] = {"source": desc.to_xcom()}
    for problem in (engine_problem(desc), status_problem(desc)):
        if problem:
            problems.append(problem)
    value = None
    if desc.parameter_group:
        value = get_parameter(source_rds, db_type=checks.db_type, parameter_group=desc.parameter_group,
                              name=LOGICAL_REPLICATION)
    facts["logical_replication"] = value or "0"
    lr_problem = logical_replication_problem(desc, value)
    fixable = bool(lr_problem) and bool(desc.parameter_group) and not desc.parameter_group.startswith("default.")
    if lr_problem:
        problems.append(lr_problem)
    kms_problem, key_arn = source_kms_problem(source_kms, desc, expected_key_id=checks.source_kms_key_id) \
        if checks.shares_storage else (None, desc.kms_key_id)
    facts["source_kms_key_arn"] = key_arn
    if kms_problem:
        problems.append(kms_problem)
    source_region = source_rds.meta.region_name
    target_region = target_rds.meta.region_name
    facts["region"] = parse_arn(desc.arn).region
    problem = region_problem(desc.arn, source_region=source_region, target_region=target_region)
    if problem:
        problems.append(problem)
    problem, target_key_arn = target_kms_problem(target_kms, checks.target_kms_key_id, region=facts["region"])
    facts["target_kms_key_arn"] = target_key_arn
    if problem:
        problems.append(problem)
    existing = kind.describe(target_rds, checks.target_identifier) if checks.target_identifier else None
    if checks.target_parameter_group:
        # Once an earlier try made the target, the migration itself has set the value to 0 there
        # (target_logical_replication_off, after dropping the copied slots): only existence counts then.
        problem = target_parameter_group_problem(target_rds, desc, checks.target_parameter_group,
                                                 check_value=existing is None)
        if problem:
            problems.append(problem)
    ours = existing is not None and (existing.tags.get(MIGRATION_TAG) == checks.migration_id
                                     and existing.tags.get(SOURCE_TAG) == desc.arn)
    if existing is not None and not ours:
        problems.append(f"{kind.label} {checks.target_identifier} already exists in the target account and was not "
                        f"made by this migration: choose another target identifier or delete it")
    problem, lowest = storage_problem(source_cloudwatch, desc, min_free_bytes=checks.min_free_storage_bytes,
                                      now=now, lookback_minutes=checks.storage_lookback_minutes)
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
