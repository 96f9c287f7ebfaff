"""Shared by every AWS phase: errors, input checks, tags, the database-kind record, describe calls."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from migration.naming import AWS_ACCOUNT_ID_RE, is_aws_identifier

MIGRATION_TAG = "pg-account-migration"
SOURCE_TAG = "pg-account-migration-source"
DEFAULT_INSTANCE_CLASS = "db.r6g.large"
# Statuses a wait can never leave by itself: waiting on would only burn the timeout.
TERMINAL_DB_STATUSES = frozenset({
    "failed", "deleting", "incompatible-restore", "incompatible-parameters", "incompatible-network",
    "incompatible-option-group", "inaccessible-encryption-credentials",
    "inaccessible-encryption-credentials-recoverable", "storage-full",
})
PARAMETER_GROUP_NOT_FOUND = ("DBParameterGroupNotFound", "DBClusterParameterGroupNotFound",
                             "DBClusterParameterGroupNotFoundFault")


class AwsMigrationError(RuntimeError):
    """An AWS resource is not in the state the migration needs; the message names it and the fix."""


# ---------------------------------------------------------------------------------------------
# Small helpers: error codes, ARNs, identifiers, tags
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


def parse_arn(value: Any, *, field: str = "arn") -> Arn:
    if not isinstance(value, str) or not _ARN_RE.match(value):
        raise ValueError(f"{field}: expected an ARN like arn:aws:rds:us-east-1:123456789012:cluster:name, "
                         f"got {value!r}")
    partition, service, region, account, resource = _ARN_RE.match(value).groups()
    return Arn(partition, service, region, account, resource)


def check_account_id(value: Any, *, field: str = "account_id") -> str:
    if not isinstance(value, str) or not AWS_ACCOUNT_ID_RE.match(value):
        raise ValueError(f"{field}: expected a 12-digit AWS account id, got {value!r}")
    return value


def check_identifier(value: Any, *, field: str, max_length: int = 63) -> str:
    """RDS identifiers: a letter, then letters, digits and single hyphens, not ending in a hyphen."""
    if not is_aws_identifier(value, max_length=max_length):
        raise ValueError(
            f"{field}: expected an RDS identifier (1 to {max_length} letters, digits or single hyphens, "
            f"starting with a letter, not ending with a hyphen), got {value!r}"
        )
    return value


def migration_tags(migration_id: str, source_arn: str) -> list[dict[str, str]]:
    """Tags that mark a resource as made by this migration from this source."""
    return [{"Key": MIGRATION_TAG, "Value": migration_id}, {"Key": SOURCE_TAG, "Value": source_arn}]


def tag_dict(tag_list: Iterable[dict[str, str]] | None) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in tag_list or ()}


def require_ours(kind: str, identifier: str, tags: dict[str, str], migration_id: str, source_arn: str | None,
                 field: str) -> None:
    """Refuse to adopt ``identifier`` unless its tags say this migration made it from ``source_arn``."""
    if tags.get(MIGRATION_TAG) != migration_id or (source_arn and tags.get(SOURCE_TAG) != source_arn):
        raise AwsMigrationError(
            f"{kind} {identifier} already exists but was not made by migration {migration_id!r} from {source_arn} "
            f"(its tags: {tags or 'none'}): choose another {field}, or delete {identifier} if it is a leftover"
        )


def optional_params(**values: Any) -> dict[str, Any]:
    """The request parameters that have a value (a sequence becomes a list); the unset ones are left out."""
    return {key: list(value) if isinstance(value, list | tuple) else value for key, value in values.items() if value}


def version_tuple(version: str) -> tuple[int, int] | None:
    match = re.match(r"^(\d+)(?:\.(\d+))?", version or "")
    if not match:
        return None
    return int(match.group(1)), int(match.group(2) or 0)


def parameter_group_family(engine: str, version: str) -> str:
    """The parameter group family of an engine version ("aurora-postgresql13", "postgres15")."""
    parsed = version_tuple(version)
    return f"{engine}{parsed[0] if parsed else version}"


def where(client: Any) -> str:
    return f"region {getattr(client.meta, 'region_name', '?')} of this connection's account"


# ---------------------------------------------------------------------------------------------
# Database kinds and describing databases
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

    @property
    def kind(self) -> DbKind:
        return db_kind(self.db_type)

    def to_xcom(self) -> dict[str, Any]:
        data = asdict(self)
        data["security_group_ids"] = list(self.security_group_ids)
        return data


def _from_cluster(cluster: dict[str, Any]) -> DbDescription:
    writer = next((m for m in cluster.get("DBClusterMembers", []) if m.get("IsClusterWriter")), None)
    return DbDescription(
        db_type="cluster", identifier=cluster["DBClusterIdentifier"], arn=cluster["DBClusterArn"],
        engine=cluster.get("Engine", ""), engine_version=cluster.get("EngineVersion", ""),
        status=cluster.get("Status", ""), parameter_group=cluster.get("DBClusterParameterGroup"),
        parameter_apply_status=writer.get("DBClusterParameterGroupStatus") if writer else None,
        writer_instance=writer["DBInstanceIdentifier"] if writer else None,
        kms_key_id=cluster.get("KmsKeyId") if cluster.get("StorageEncrypted") else None,
        storage_encrypted=bool(cluster.get("StorageEncrypted")),
        host=cluster.get("Endpoint"), port=cluster.get("Port"), tags=tag_dict(cluster.get("TagList")),
        security_group_ids=tuple(g["VpcSecurityGroupId"] for g in cluster.get("VpcSecurityGroups", [])),
    )


def _from_instance(instance: dict[str, Any]) -> DbDescription:
    groups = instance.get("DBParameterGroups") or [{}]
    endpoint = instance.get("Endpoint") or {}
    return DbDescription(
        db_type="instance", identifier=instance["DBInstanceIdentifier"], arn=instance["DBInstanceArn"],
        engine=instance.get("Engine", ""), engine_version=instance.get("EngineVersion", ""),
        status=instance.get("DBInstanceStatus", ""), parameter_group=groups[0].get("DBParameterGroupName"),
        parameter_apply_status=groups[0].get("ParameterApplyStatus"),
        writer_instance=instance["DBInstanceIdentifier"],
        kms_key_id=instance.get("KmsKeyId") if instance.get("StorageEncrypted") else None,
        storage_encrypted=bool(instance.get("StorageEncrypted")),
        host=endpoint.get("Address"), port=endpoint.get("Port"), tags=tag_dict(instance.get("TagList")),
        security_group_ids=tuple(g["VpcSecurityGroupId"] for g in instance.get("VpcSecurityGroups", [])),
        cluster_identifier=instance.get("DBClusterIdentifier"),
    )


@dataclass(frozen=True)
class DbKind:
    """Everything that differs between an Aurora cluster and an RDS instance, in one record.

    Like the amazon provider's ``RdsDbType``, but it also holds the calls: the describe call and
    its not-found code, the parameter-group calls, the stop call, and the words messages use. The
    API, CLI and message names follow from two nouns: the resource's ("cluster": DBClusterIdentifier,
    describe_db_clusters, db-cluster) and its parameter group's ("cluster": DB cluster parameter
    group; "": DB parameter group).
    """

    db_type: str                      # the config's value: "cluster" or "instance"
    noun: str                         # DB<Noun>Identifier, describe_db_<noun>s, db-<noun>, "DB <noun>"
    group_noun: str                   # DB<Noun>ParameterGroupName, describe_db_<noun>_parameters ("" for RDS)
    engine: str                       # the engine this path needs
    engine_label: str
    min_version: tuple[int, int]      # CDC needs at least this engine version
    min_version_label: str
    storage_metric: str               # CloudWatch free-storage metric of the writer
    separate_writer: bool             # the writer is an instance of its own (Aurora)
    not_found_code: str
    already_exists_code: str
    parse: Callable[[dict[str, Any]], DbDescription]

    label = property(lambda self: f"DB {self.noun}")  # "DB cluster" in messages
    config_field = property(lambda self: f"source.{self.noun}_identifier")  # where the config names the source
    cli_noun = property(lambda self: f"db-{self.noun}")  # aws rds modify-<cli_noun> --<cli_noun>-identifier
    id_param = property(lambda self: f"DB{self.noun.title()}Identifier")
    describe_call = property(lambda self: f"describe_db_{self.noun}s")
    describe_key = property(lambda self: f"DB{self.noun.title()}s")
    stop_call = property(lambda self: f"stop_db_{self.noun}")
    _group = property(lambda self: "_".join(("db", self.group_noun)) if self.group_noun else "db")
    parameter_group_label = property(lambda self: " ".join(filter(None, ("DB", self.group_noun, "parameter group"))))
    parameter_group_param = property(lambda self: f"DB{self.group_noun.title()}ParameterGroupName")
    parameter_group_cli = property(lambda self: f"{self._group.replace('_', '-')}-parameter-group")
    describe_parameters_call = property(lambda self: f"describe_{self._group}_parameters")
    describe_parameter_groups_call = property(lambda self: f"describe_{self._group}_parameter_groups")
    modify_parameter_group_call = property(lambda self: f"modify_{self._group}_parameter_group")

    def describe(self, rds: Any, identifier: str) -> DbDescription | None:
        """The cluster or instance, or None when it does not exist (in the client's account and region)."""
        try:
            found = getattr(rds, self.describe_call)(**{self.id_param: identifier})[self.describe_key][0]
        except ClientError as exc:
            if error_code(exc) == self.not_found_code:
                return None
            raise
        return self.parse(found)

    def create_or_find(self, rds: Any, identifier: str, create: Callable[[], dict[str, Any]], *,
                       field: str) -> tuple[dict[str, Any] | None, DbDescription | None]:
        """``(what create() returned, None)``; or ``(None, the existing one)`` when ``identifier`` exists
        already (an earlier try made it, or a concurrent one did while this one created)."""
        existing = self.describe(rds, identifier)
        if existing is not None:
            return None, existing
        try:
            return create(), None
        except ClientError as exc:
            if error_code(exc) != self.already_exists_code:
                raise
        return None, require_db(rds, db_type=self.db_type, identifier=identifier, field=field)

    def ensure(self, rds: Any, identifier: str, create: Callable[[], dict[str, Any]], *, field: str,
               migration_id: str | None = None, source_arn: str | None = None
               ) -> tuple[dict[str, Any], DbDescription]:
        """Create ``identifier`` or find the one an earlier try made (``create_or_find``); a found one must
        carry this migration's tags when ``migration_id`` is given. Returns ``({<noun>_identifier,
        <noun>_arn, status, created}, its description)``."""
        made, existing = self.create_or_find(rds, identifier, create, field=field)
        desc = self.parse(made) if made is not None else existing
        if made is None and migration_id is not None:
            require_ours(self.label, identifier, existing.tags, migration_id, source_arn, field)
        return ({f"{self.noun}_identifier": identifier, f"{self.noun}_arn": desc.arn, "status": desc.status,
                 "created": made is not None}, desc)

    def parameters(self, rds: Any, parameter_group: str) -> Iterable[dict[str, Any]]:
        """Every parameter of ``parameter_group``, page by page."""
        pages = rds.get_paginator(self.describe_parameters_call).paginate(
            **{self.parameter_group_param: parameter_group})
        for page in pages:
            yield from page.get("Parameters", [])

    def modify_parameters(self, rds: Any, parameter_group: str, parameters: Sequence[dict[str, Any]]) -> None:
        getattr(rds, self.modify_parameter_group_call)(**{self.parameter_group_param: parameter_group,
                                                          "Parameters": list(parameters)})

    def parameter_group_exists(self, rds: Any, parameter_group: str) -> bool:
        try:
            getattr(rds, self.describe_parameter_groups_call)(**{self.parameter_group_param: parameter_group})
        except ClientError as exc:
            if error_code(exc) in PARAMETER_GROUP_NOT_FOUND:
                return False
            raise
        return True

    def stop(self, rds: Any, identifier: str) -> None:
        getattr(rds, self.stop_call)(**{self.id_param: identifier})


# Aurora PostgreSQL needs 11.9 for DMS CDC and aurora_volume_logical_start_lsn().
CLUSTER = DbKind("cluster", "cluster", "cluster", "aurora-postgresql", "Aurora PostgreSQL", (11, 9), "11.9",
                 "FreeLocalStorage", True, "DBClusterNotFoundFault", "DBClusterAlreadyExistsFault", _from_cluster)
INSTANCE = DbKind("instance", "instance", "", "postgres", "RDS for PostgreSQL", (11, 0), "11",
                  "FreeStorageSpace", False, "DBInstanceNotFound", "DBInstanceAlreadyExists", _from_instance)
DB_KINDS = {kind.db_type: kind for kind in (CLUSTER, INSTANCE)}
DB_TYPES = tuple(DB_KINDS)


def db_kind(db_type: Any) -> DbKind:
    """The record for ``db_type``; a clear error for anything but 'cluster' or 'instance'."""
    kind = DB_KINDS.get(db_type) if isinstance(db_type, str) else None
    if kind is None:
        raise ValueError(f"db_type: expected 'cluster' (Aurora) or 'instance' (RDS), got {db_type!r}")
    return kind


def check_db_type(value: Any) -> str:
    return db_kind(value).db_type


def describe_db(rds: Any, *, db_type: str, identifier: str) -> DbDescription | None:
    """The cluster or instance, or None when it does not exist (in the client's account and region)."""
    return db_kind(db_type).describe(rds, identifier)


def require_db(rds: Any, *, db_type: str, identifier: str, field: str) -> DbDescription:
    kind = db_kind(db_type)
    desc = kind.describe(rds, identifier)
    if desc is None:
        raise AwsMigrationError(f"{kind.label} {identifier} does not exist in {where(rds)}: check {field}")
    return desc


def describe_kms_key(kms: Any, key_id: str) -> dict[str, Any] | None:
    try:
        return kms.describe_key(KeyId=key_id)["KeyMetadata"]
    except ClientError as exc:
        if error_code(exc) in ("NotFoundException", "NotFound"):
            return None
        raise


# ---------------------------------------------------------------------------------------------
# Waiting: the check the poll entry point (triggers.checks.check_db_available) runs
# ---------------------------------------------------------------------------------------------

def db_available(rds: Any, *, db_type: str, identifier: str, writer_instance_identifier: str | None = None,
                 require_parameters_in_sync: bool = False) -> tuple[bool, dict[str, Any]]:
    """(done, payload): the cluster (and its writer) or instance is available; payload carries host and port."""
    kind = db_kind(db_type)
    desc = require_db(rds, db_type=db_type, identifier=identifier, field="the identifier the create task used")
    if desc.status in TERMINAL_DB_STATUSES:
        raise AwsMigrationError(f"{kind.label} {identifier} is {desc.status!r}; it will not become available by "
                                f"itself: see its events (aws rds describe-events --source-identifier "
                                f"{identifier})")
    payload: dict[str, Any] = {"identifier": identifier, "status": desc.status, "host": desc.host, "port": desc.port}
    done = desc.status == "available"
    if kind.separate_writer and writer_instance_identifier:
        writer = require_db(rds, db_type=INSTANCE.db_type, identifier=writer_instance_identifier,
                            field="the writer identifier the create task used")
        if writer.status in TERMINAL_DB_STATUSES:
            raise AwsMigrationError(f"writer {writer_instance_identifier} of {kind.label} {identifier} is "
                                    f"{writer.status!r}: see its events")
        payload["writer_status"] = writer.status
        done = done and writer.status == "available"
    if require_parameters_in_sync:
        payload["parameter_apply_status"] = desc.parameter_apply_status
        done = done and desc.parameter_apply_status in (None, "in-sync")
    if done and not desc.host:
        done = False
    return done, payload
