"""The migration config model: one YAML per migration, validated on load.

The same model validates the YAML, describes the DAG's Params (the trigger form) and validates a
run's conf before any task creates anything. Every error names the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from migration.config_reader import ConfigError, Reader, check_names, parse_time
from migration.naming import AWS_ACCOUNT_ID_RE, CONN_ID_RE, MIGRATION_ID_RE

PLATFORMS = ("aws", "local")
INITIAL_LOADS = {"aurora_clone": "aws", "rds_snapshot": "aws", "pg_basebackup": "local", "pg_dump": None}
CDC_ENGINES = ("dms", "native")
APPROVALS = ("manual", "auto")
WRITE_BLOCKS = ("roles", "security_group")
# The source's slot is created by the project (migration/slots.py) with test_decoding; pglogical is not supported.
DMS_PLUGINS = ("test_decoding",)
# Fields that only mean something on AWS: set on the local platform they would be silently ignored.
AWS_ONLY_ENDPOINT_FIELDS = ("aws_conn_id", "account_id", "region", "cluster_identifier", "instance_identifier",
                            "kms_key_id", "security_group_ids", "subnet_group", "parameter_group", "instance_class")
AWS_ONLY_CUTOVER_FIELDS = ("dns_zone_id", "dns_record_name", "dns_ttl", "stop_source", "keep_cidrs")



def is_system_schema(name: str) -> bool:
    """PostgreSQL's own schemas: pg_catalog, pg_toast, pg_temp_N, any pg_* name, and information_schema."""
    return name == "information_schema" or name.startswith("pg_")


def check_user_schemas(names: list[str], source: str, field_path: str) -> list[str]:
    """Refuse PostgreSQL's own schemas where user schemas are expected."""
    system = [name for name in names if is_system_schema(name)]
    if system:
        raise ConfigError(source, field_path, f"{system[0]!r} is a PostgreSQL system schema; name user schemas only")
    return names


@dataclass(frozen=True)
class Endpoint:
    """One side of the migration: how to reach it, and its AWS identity when on AWS."""

    conn_id: str
    # source only: the role CDC connects as (pg_basebackup, the subscription); None: conn_id
    replication_conn_id: str | None = None
    aws_conn_id: str | None = None
    account_id: str | None = None
    region: str | None = None
    cluster_identifier: str | None = None
    instance_identifier: str | None = None
    kms_key_id: str | None = None
    security_group_ids: tuple[str, ...] = ()
    subnet_group: str | None = None
    parameter_group: str | None = None
    instance_class: str | None = None
    # local platform: where the clone's data directory lives (it listens on the target connection's port)
    data_directory: str | None = None
    port: int | None = None


@dataclass(frozen=True)
class DmsSettings:
    replication_instance_arn: str | None = None
    instance_class: str = "dms.t3.medium"
    allocated_storage_gb: int = 50
    subnet_group: str | None = None
    security_group_ids: tuple[str, ...] = ()
    multi_az: bool = False
    plugin: str = "test_decoding"
    heartbeat_minutes: int = 5
    capture_ddls: bool = False
    validation_threads: int = 5
    lob_max_size_kb: int = 32
    secrets_manager_secret_id: str | None = None
    secrets_manager_access_role_arn: str | None = None
    session_replication_role_replica: bool = False
    max_latency_seconds: int = 5
    consecutive_datapoints: int = 3
    poll_interval_seconds: int = 15


@dataclass(frozen=True)
class CutoverSettings:
    approval: str = "manual"
    max_lag_bytes: int = 1024 * 1024
    max_apply_age_seconds: int = 60
    write_block: str = "roles"
    application_roles: tuple[str, ...] = ()
    drain_timeout_seconds: int = 60
    max_write_block_seconds: int = 60
    not_before: str | None = None
    not_after: str | None = None
    dns_zone_id: str | None = None
    dns_record_name: str | None = None
    dns_ttl: int = 30
    stop_source: bool = False
    approval_timeout_hours: int = 24
    keep_cidrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class LogicalLoadSettings:
    """``initial_load: pg_dump`` only. ``jobs``: pg_dump and pg_restore jobs (None: the cores, at most 4);
    ``dump_directory``: under it each database's dump goes to ``<migration_id>/<database>`` (None: the
    system's temporary folder); only that folder is emptied and removed."""

    jobs: int | None = None
    dump_directory: str | None = None


@dataclass(frozen=True)
class ValidationSettings:
    chunk_rows: int = 10000
    max_rechecks: int = 3


@dataclass(frozen=True)
class MigrationConfig:
    migration_id: str
    platform: str
    initial_load: str
    cdc_engine: str
    source: Endpoint
    target: Endpoint
    databases: tuple[str, ...]
    schemas: tuple[str, ...]
    control_schema: str = "migration_control"
    # User schemas with tables that are deliberately not migrated (the target still holds their clone-time copy).
    exclude_schemas: tuple[str, ...] = ()
    description: str = ""
    owner: str = "migration"
    allow_replica_identity_full: bool = False
    max_transaction_age_seconds: int = 300
    set_logical_replication: bool = False
    dms: DmsSettings = field(default_factory=DmsSettings)
    cutover: CutoverSettings = field(default_factory=CutoverSettings)
    validation: ValidationSettings = field(default_factory=ValidationSettings)
    logical_load: LogicalLoadSettings = field(default_factory=LogicalLoadSettings)
    path: str = ""

    @property
    def dag_id(self) -> str:
        return f"migrate__{self.migration_id}"

    def params_spec(self) -> dict[str, dict[str, Any]]:
        """The trigger form's fields as JSON-schema-like dicts (the DAG wraps each in an Airflow Param)."""
        return {
            "databases": {
                "default": list(self.databases), "type": "array", "items": {"type": "string"}, "minItems": 1,
                "title": "Databases",
                "description": f"Databases to migrate; each must be one of {list(self.databases)}.",
            },
            "schemas": {
                "default": list(self.schemas), "type": "array", "items": {"type": "string"}, "minItems": 1,
                "title": "Schemas",
                "description": f"Schemas whose tables are replicated and validated; each must be one of "
                               f"{list(self.schemas)}. A schema left out here that has tables fails preflight "
                               f"(the target is a clone of whole databases); exclude_schemas in the YAML says so.",
            },
            "cutover_not_before": {
                "default": self.cutover.not_before, "type": ["null", "string"],
                "title": "Cutover not before",
                "description": "ISO 8601 time (with offset) before which the cutover may not start; empty for none.",
            },
            "cutover_not_after": {
                "default": self.cutover.not_after, "type": ["null", "string"],
                "title": "Cutover not after",
                "description": "ISO 8601 time (with offset) after which the cutover may not start; empty for none.",
            },
            "dry_run": {
                "default": False, "type": "boolean", "title": "Dry run",
                "description": "Run the checks only (preflight); create nothing.",
            },
        }

    def run_settings(self, conf: dict[str, Any] | None) -> RunSettings:
        """Validate one run's conf (the trigger form) against this migration; raises ConfigError."""
        source = f"run conf of {self.dag_id}"
        conf = dict(conf or {})
        known = set(self.params_spec())
        unknown = sorted(set(conf) - known)
        if unknown:
            raise ConfigError(source, unknown[0], f"is not a parameter of this DAG; expected one of {sorted(known)}")
        databases = check_names(conf.get("databases", list(self.databases)), source, "databases")
        extra = [db for db in databases if db not in self.databases]
        if extra:
            raise ConfigError(source, "databases",
                              f"{extra[0]!r} is not in the migration's databases {list(self.databases)}")
        schemas = check_names(conf.get("schemas", list(self.schemas)), source, "schemas")
        if self.control_schema in schemas:
            raise ConfigError(source, "schemas", f"{self.control_schema!r} is the control schema; it is never migrated")
        extra = [name for name in schemas if name not in self.schemas]
        if extra:
            raise ConfigError(source, "schemas",
                              f"{extra[0]!r} is not in the migration's schemas {list(self.schemas)}; a run may only "
                              f"narrow them (add a schema in the YAML)")
        window = {}
        for key in ("cutover_not_before", "cutover_not_after"):
            value = conf.get(key, getattr(self.cutover, key.removeprefix("cutover_")))
            window[key] = parse_time(value, source, key) if value not in (None, "") else None
        if window["cutover_not_before"] and window["cutover_not_after"] and \
                window["cutover_not_after"] <= window["cutover_not_before"]:
            raise ConfigError(source, "cutover_not_after", "must be later than cutover_not_before")
        dry_run = conf.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise ConfigError(source, "dry_run", f"expected true or false, got {dry_run!r}")
        return RunSettings(databases=databases, schemas=schemas, dry_run=dry_run,
                           cutover_not_before=_iso(window["cutover_not_before"]),
                           cutover_not_after=_iso(window["cutover_not_after"]))


@dataclass(frozen=True)
class RunSettings:
    databases: list[str]
    schemas: list[str]
    dry_run: bool = False
    cutover_not_before: str | None = None
    cutover_not_after: str | None = None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _cidrs(r: Reader, key: str) -> list[str]:
    import ipaddress

    value = r.get(key, [])
    if not isinstance(value, list):
        raise r.error(key, f"expected a list of CIDR blocks like 10.0.0.0/16, got {value!r}")
    for item in value:
        try:
            ipaddress.ip_network(item)
        except (TypeError, ValueError):
            raise r.error(key, f"expected CIDR blocks like 10.0.0.0/16, got {item!r}") from None
    return value


def _refuse_aws_only(r: Reader, keys: tuple[str, ...], platform: str) -> None:
    if platform == "aws":
        return
    for key in keys:
        if r.data.get(key) is not None:
            raise r.error(key, f"is only used on platform aws; the platform is {platform}: remove it")


def _security_groups(r: Reader, key: str) -> list[str]:
    groups = r.get(key, [])
    if isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, list) or not all(isinstance(g, str) and g.startswith("sg-") for g in groups):
        raise r.error(key, f"expected a list of security group ids like sg-0123abcd, got {groups!r}")
    return groups


def _endpoint(r: Reader, platform: str, side: str) -> Endpoint:
    aws = platform == "aws"
    _refuse_aws_only(r, AWS_ONLY_ENDPOINT_FIELDS, platform)
    port = r.get("port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535):
        raise r.error("port", f"expected a TCP port from 1 to 65535, got {port!r}")
    groups = _security_groups(r, "security_group_ids")
    endpoint = Endpoint(
        conn_id=r.text("conn_id", required=True, pattern=CONN_ID_RE, hint="expected an Airflow connection id"),
        replication_conn_id=(r.text("replication_conn_id", pattern=CONN_ID_RE, hint="expected an Airflow connection id")
                             if side == "source" else None),
        aws_conn_id=r.text("aws_conn_id", required=aws, pattern=CONN_ID_RE, hint="expected an Airflow connection id"),
        account_id=r.text("account_id", required=aws, pattern=AWS_ACCOUNT_ID_RE,
                          hint="expected a 12-digit AWS account id"),
        region=r.text("region", required=aws),
        cluster_identifier=r.text("cluster_identifier"),
        instance_identifier=r.text("instance_identifier"),
        kms_key_id=r.text("kms_key_id"),
        security_group_ids=tuple(groups),
        subnet_group=r.text("subnet_group"),
        parameter_group=r.text("parameter_group"),
        instance_class=r.text("instance_class"),
        data_directory=r.text("data_directory"),
        port=port,
    )
    r.done()
    return endpoint


def parse_config(data: Any, source: str = "<config>") -> MigrationConfig:
    """Build and validate a MigrationConfig from parsed YAML; raises ConfigError naming the field."""
    r = Reader(source, data, "")
    migration_id = r.text("migration_id", required=True, pattern=MIGRATION_ID_RE,
                         hint="expected lower-case letters, digits and _ (starting with a letter, at most 40)")
    platform = r.text("platform", required=True, choices=PLATFORMS)
    initial_load = r.text("initial_load", required=True, choices=tuple(INITIAL_LOADS))
    needs = INITIAL_LOADS[initial_load]
    if needs and needs != platform:
        raise r.error("initial_load", f"{initial_load} needs platform {needs}, but platform is {platform}")
    cdc_engine = r.text("cdc_engine", required=True, choices=CDC_ENGINES)
    if cdc_engine == "dms" and platform != "aws":
        raise r.error("cdc_engine", "dms needs platform aws; use native on the local platform")
    source_ep = _endpoint(r.sub("source"), platform, "source")
    target_ep = _endpoint(r.sub("target"), platform, "target")
    if initial_load == "aurora_clone" and not source_ep.cluster_identifier:
        raise ConfigError(source, "source.cluster_identifier", "is required for initial_load aurora_clone")
    if initial_load == "aurora_clone" and not target_ep.cluster_identifier:
        raise ConfigError(source, "target.cluster_identifier",
                          "is required for initial_load aurora_clone (the clone's name)")
    if initial_load == "rds_snapshot":
        for side, ep in (("source", source_ep), ("target", target_ep)):
            if not ep.instance_identifier:
                raise ConfigError(source, f"{side}.instance_identifier", "is required for initial_load rds_snapshot")
    # A clone or a snapshot is shared with the target account and started there; a dump needs neither a
    # key to share nor a parameter group to start with (the target exists and only subscribes).
    copies_storage = initial_load != "pg_dump"
    if platform == "aws" and copies_storage:
        for side, ep in (("source", source_ep), ("target", target_ep)):
            if not ep.kms_key_id:
                raise ConfigError(source, f"{side}.kms_key_id",
                                  f"is required for initial_load {initial_load}: a customer-managed KMS key "
                                  "(not aws/rds)")
            if ep.kms_key_id in ("alias/aws/rds", "aws/rds"):
                raise ConfigError(source, f"{side}.kms_key_id",
                                  "must be a customer-managed key; aws/rds cannot be shared across accounts")
    if platform == "aws" and not copies_storage:  # the clone paths require their identifiers above
        for side, ep in (("source", source_ep), ("target", target_ep)):  # a dump's target exists already
            if not (ep.cluster_identifier or ep.instance_identifier):
                raise ConfigError(source, f"{side}.instance_identifier",
                                  f"{side}.cluster_identifier (Aurora) or {side}.instance_identifier (RDS) is required "
                                  "on AWS")
    if platform == "aws":
        if source_ep.region != target_ep.region:
            raise ConfigError(source, "target.region",
                              f"must equal source.region ({source_ep.region}): a clone cannot cross regions")
        if source_ep.account_id == target_ep.account_id:
            raise ConfigError(source, "target.account_id", "must differ from source.account_id")
        if copies_storage and not target_ep.parameter_group:
            raise ConfigError(source, "target.parameter_group",
                              f"is required for initial_load {initial_load}: a custom parameter group with "
                              "rds.logical_replication=1 (the clone "
                              "carries logical slots and cannot start without it; default groups cannot be changed)")
    if initial_load == "pg_basebackup" and not target_ep.data_directory:
        raise ConfigError(source, "target.data_directory",
                          "is required for pg_basebackup: where the clone's data directory goes")
    if target_ep.data_directory and not Path(target_ep.data_directory).is_absolute():
        raise ConfigError(source, "target.data_directory",
                          f"expected an absolute path, got {target_ep.data_directory!r}")

    dr = r.sub("dms")
    if platform != "aws" and dr.data:
        raise dr.error(sorted(dr.data)[0], f"dms settings are only used on platform aws; the platform is {platform}")
    if dr.data.get("plugin") == "pglogical":
        raise dr.error("plugin", "pglogical is not supported: the migration creates the source's replication slot "
                                 "with test_decoding, and DMS must read it with the same plugin; use test_decoding")
    dms_groups = _security_groups(dr, "security_group_ids")
    dms = DmsSettings(
        replication_instance_arn=dr.text("replication_instance_arn"),
        instance_class=dr.text("instance_class", "dms.t3.medium"),
        allocated_storage_gb=dr.integer("allocated_storage_gb", 50, minimum=5, maximum=6144),
        subnet_group=dr.text("subnet_group"),
        security_group_ids=tuple(dms_groups or ()),
        multi_az=dr.flag("multi_az", False),
        plugin=dr.text("plugin", "test_decoding", choices=DMS_PLUGINS),
        heartbeat_minutes=dr.integer("heartbeat_minutes", 5, minimum=1),
        capture_ddls=dr.flag("capture_ddls", False),
        validation_threads=dr.integer("validation_threads", 5, minimum=1, maximum=200),
        lob_max_size_kb=dr.integer("lob_max_size_kb", 32, minimum=1),
        secrets_manager_secret_id=dr.text("secrets_manager_secret_id"),
        secrets_manager_access_role_arn=dr.text("secrets_manager_access_role_arn"),
        session_replication_role_replica=dr.flag("session_replication_role_replica", False),
        max_latency_seconds=dr.integer("max_latency_seconds", 5, minimum=0),
        consecutive_datapoints=dr.integer("consecutive_datapoints", 3, minimum=1),
        poll_interval_seconds=dr.integer("poll_interval_seconds", 15, minimum=1),
    )
    dr.done()
    if dms.secrets_manager_secret_id and not dms.secrets_manager_access_role_arn:
        raise ConfigError(source, "dms.secrets_manager_access_role_arn",
                          "is required with dms.secrets_manager_secret_id")

    cr = r.sub("cutover")
    _refuse_aws_only(cr, AWS_ONLY_CUTOVER_FIELDS, platform)
    cutover = CutoverSettings(
        approval=cr.text("approval", "manual", choices=APPROVALS),
        max_lag_bytes=cr.integer("max_lag_bytes", 1024 * 1024),
        max_apply_age_seconds=cr.integer("max_apply_age_seconds", 60),
        write_block=cr.text("write_block", "security_group" if platform == "aws" else "roles", choices=WRITE_BLOCKS),
        application_roles=tuple(cr.names("application_roles", [], required=False)),
        drain_timeout_seconds=cr.integer("drain_timeout_seconds", 60, minimum=1),
        max_write_block_seconds=cr.integer("max_write_block_seconds", 60, minimum=1),
        not_before=_iso(parse_time(cr.get("not_before"), source,
                                   cr.where("not_before"))) if cr.get("not_before") else None,
        not_after=_iso(parse_time(cr.get("not_after"), source, cr.where("not_after"))) if cr.get("not_after") else None,
        dns_zone_id=cr.text("dns_zone_id"),
        dns_record_name=cr.text("dns_record_name"),
        dns_ttl=cr.integer("dns_ttl", 30, minimum=0),
        stop_source=cr.flag("stop_source", False),
        approval_timeout_hours=cr.integer("approval_timeout_hours", 24, minimum=1),
        keep_cidrs=tuple(_cidrs(cr, "keep_cidrs")),
    )
    cr.done()
    if cutover.not_before and cutover.not_after and \
            datetime.fromisoformat(cutover.not_after) <= datetime.fromisoformat(cutover.not_before):
        raise ConfigError(source, "cutover.not_after", f"must be later than cutover.not_before ({cutover.not_before}), "
                                                      f"got {cutover.not_after}")
    if cutover.write_block == "security_group" and platform != "aws":
        raise ConfigError(source, "cutover.write_block", "security_group needs platform aws; use roles")
    if cutover.write_block == "security_group" and not source_ep.security_group_ids:
        raise ConfigError(source, "source.security_group_ids", "is required for cutover.write_block security_group")
    if cutover.write_block == "roles" and not cutover.application_roles:
        raise ConfigError(source, "cutover.application_roles",
                          "list the application roles whose writes are blocked at cutover")
    if bool(cutover.dns_zone_id) != bool(cutover.dns_record_name):
        raise ConfigError(source, "cutover.dns_record_name", "dns_zone_id and dns_record_name go together")

    lr = r.sub("logical_load")
    if lr.data and initial_load != "pg_dump":
        raise lr.error(sorted(lr.data)[0], f"logical_load settings are only used with initial_load pg_dump; the "
                                           f"initial load is {initial_load}: remove them")
    jobs = lr.get("jobs")
    dump_directory = lr.text("dump_directory")
    logical_load = LogicalLoadSettings(jobs=None if jobs is None else lr.integer("jobs", 0, minimum=1, maximum=64),
                                       dump_directory=dump_directory)
    lr.done()
    if dump_directory is not None and not Path(dump_directory).is_absolute():
        raise ConfigError(source, "logical_load.dump_directory", f"expected an absolute path, got {dump_directory!r}")

    vr = r.sub("validation")
    validation = ValidationSettings(chunk_rows=vr.integer("chunk_rows", 10000, minimum=1),
                                    max_rechecks=vr.integer("max_rechecks", 3, minimum=0))
    vr.done()

    if platform != "aws" and r.data.get("set_logical_replication") is not None:
        raise r.error("set_logical_replication", f"is only used on platform aws; the platform is {platform}: remove it")
    schemas = check_user_schemas(r.names("schemas", required=True), source, "schemas")
    control_schema = r.text("control_schema", "migration_control")
    control_schema = check_user_schemas(check_names(control_schema, source, "control_schema"), source,
                                        "control_schema")[0]
    exclude_schemas = check_user_schemas(r.names("exclude_schemas", [], required=False), source, "exclude_schemas")
    both = [name for name in exclude_schemas if name in schemas]
    if both:
        raise ConfigError(source, "exclude_schemas", f"{both[0]!r} is also in schemas; a schema is either migrated "
                                                     f"or excluded")
    if control_schema in exclude_schemas:
        raise ConfigError(source, "exclude_schemas", f"{control_schema!r} is the control schema, the migration's "
                                                     f"own; it needs no listing")

    config = MigrationConfig(
        migration_id=migration_id,
        platform=platform,
        initial_load=initial_load,
        cdc_engine=cdc_engine,
        source=source_ep,
        target=target_ep,
        databases=tuple(r.names("databases", required=True)),
        schemas=tuple(schemas),
        control_schema=control_schema,
        exclude_schemas=tuple(exclude_schemas),
        description=r.text("description", "") or "",
        owner=r.text("owner", "migration") or "migration",
        allow_replica_identity_full=r.flag("allow_replica_identity_full", False),
        max_transaction_age_seconds=r.integer("max_transaction_age_seconds", 300, minimum=1),
        set_logical_replication=r.flag("set_logical_replication", False),
        dms=dms,
        cutover=cutover,
        validation=validation,
        logical_load=logical_load,
        path=source,
    )
    r.done()
    if config.control_schema in config.schemas:
        raise ConfigError(source, "control_schema", "must not be one of the migrated schemas")
    return config


def _duplicate_key(node: yaml.Node | None, path: str = "") -> tuple[str, int] | None:
    """The dotted path and line of the first key that repeats within one mapping, if any."""
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            where = f"{path}.{key}" if path else str(key)
            if key is not None and key != "<<":
                if key in seen:
                    return where, key_node.start_mark.line + 1
                seen.add(key)
            found = _duplicate_key(value_node, where)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found = _duplicate_key(item, f"{path}[{index}]")
            if found:
                return found
    return None


# libyaml's loader when PyYAML was built with it (about ten times faster to parse), else the pure-Python one.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML, refusing a key given twice in one mapping (PyYAML would keep the last silently)."""
    try:
        loader = _SAFE_LOADER(text)
        try:
            node = loader.get_single_node()
            duplicate = _duplicate_key(node)
            if duplicate:
                raise ConfigError(source, duplicate[0], f"is given twice (line {duplicate[1]}); keep one")
            return loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ConfigError(source, "(file)", f"is not valid YAML: {exc}") from None


def load_config(path: str | Path) -> MigrationConfig:
    """Read and validate one migration YAML."""
    path = Path(path)
    try:
        data = load_yaml(path.read_text(), str(path))
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "(file)", f"is not valid YAML: {exc}") from None
    except OSError as exc:
        raise ConfigError(str(path), "(file)", f"cannot be read: {exc.strerror}") from None
    config = parse_config(data, str(path))
    if path.stem != config.migration_id:
        raise ConfigError(str(path), "migration_id",
                          f"must match the file name ({path.stem!r}), got {config.migration_id!r}")
    return config
