"""The config model: valid examples load, and every kind of bad input names its file and field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from migration.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "include" / "migrations").glob("*.yaml"))


def _local() -> dict:
    return yaml.safe_load((ROOT / "include" / "migrations" / "local_demo.yaml").read_text())


def _aurora() -> dict:
    return yaml.safe_load((ROOT / "include" / "migrations" / "aurora_orders.yaml").read_text())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_load(path):
    config = load_config(path)
    assert config.dag_id == f"migrate__{path.stem}"
    assert config.databases and config.schemas


def test_aurora_example_uses_dms_and_defaults_fill_in():
    config = load_config(ROOT / "include" / "migrations" / "aurora_orders.yaml")
    assert (config.initial_load, config.cdc_engine) == ("aurora_clone", "dms")
    assert config.dms.validation_threads == 8 and config.dms.heartbeat_minutes == 5
    assert config.cutover.write_block == "security_group"


def _set(data: dict, dotted: str, value):
    node = data
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    if value is _DELETE:
        node.pop(last, None)
    else:
        node[last] = value


_DELETE = object()

BAD_LOCAL = [
    ("migration_id", "Bad-Id", "migration_id", "lower-case"),
    ("migration_id", _DELETE, "migration_id", "is required"),
    ("platform", "gcp", "platform", "expected one of aws, local"),
    ("initial_load", "aurora_clone", "initial_load", "needs platform aws"),
    ("cdc_engine", "dms", "cdc_engine", "needs platform aws"),
    ("databases", [], "databases", "at least one"),
    ("databases", ["a", "a"], "databases", "must not repeat"),
    ("schemas", ["x" * 64], "schemas", "1 to 63 bytes"),
    ("source.conn_id", _DELETE, "source.conn_id", "is required"),
    ("source.conn_id", "has space", "source.conn_id", "connection id"),
    ("target.data_directory", "relative/dir", "target.data_directory", "absolute path"),
    ("target.port", 70000, "target.port", "TCP port"),
    ("cutover.approval", "maybe", "cutover.approval", "manual, auto"),
    ("cutover.max_lag_bytes", -1, "cutover.max_lag_bytes", "at least 0"),
    ("cutover.max_lag_bytes", "10", "cutover.max_lag_bytes", "whole number"),
    ("cutover.application_roles", [], "cutover.application_roles", "application roles"),
    ("cutover.not_before", "tomorrow", "cutover.not_before", "ISO 8601"),
    ("cutover.not_before", "2026-12-01T00:00:00", "cutover.not_before", "UTC offset"),
    ("cutover.write_block", "security_group", "cutover.write_block", "needs platform aws"),
    ("cutover.surprise", 1, "cutover.surprise", "not a known setting"),
    ("validation.chunk_rows", 0, "validation.chunk_rows", "at least 1"),
    ("control_schema", "dms_sample", "control_schema", "must not be one of the migrated schemas"),
    ("allow_replica_identity_full", "yes", "allow_replica_identity_full", "true or false"),
]


@pytest.mark.parametrize(("field", "value", "named", "says"), BAD_LOCAL, ids=[f"{b[0]}-{i}" for i,
                                                                              b in enumerate(BAD_LOCAL)])
def test_bad_local_config_names_the_field(field, value, named, says):
    data = _local()
    _set(data, field, value)
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "local_demo.yaml")
    assert caught.value.field_path == named
    assert str(caught.value).startswith(f"local_demo.yaml: {named}: ")
    assert says in str(caught.value)


BAD_AURORA = [
    ("source.account_id", "1234", "source.account_id", "12-digit"),
    ("target.account_id", "614400000000", "target.account_id", "must differ"),
    ("target.region", "us-east-1", "target.region", "cannot cross regions"),
    ("source.kms_key_id", "alias/aws/rds", "source.kms_key_id", "customer-managed"),
    ("target.kms_key_id", _DELETE, "target.kms_key_id", "is required"),
    ("source.cluster_identifier", _DELETE, "source.cluster_identifier", "aurora_clone"),
    ("source.security_group_ids", ["0a1b"], "source.security_group_ids", "sg-"),
    ("dms.plugin", "wal2json", "dms.plugin", "expected one of test_decoding"),
    ("dms.validation_threads", 0, "dms.validation_threads", "at least 1"),
    ("dms.secrets_manager_access_role_arn", _DELETE, "dms.secrets_manager_access_role_arn", "is required"),
    ("cutover.dns_record_name", _DELETE, "cutover.dns_record_name", "go together"),
]


@pytest.mark.parametrize(("field", "value", "named", "says"), BAD_AURORA, ids=[f"{b[0]}-{i}" for i,
                                                                               b in enumerate(BAD_AURORA)])
def test_bad_aurora_config_names_the_field(field, value, named, says):
    data = _aurora()
    _set(data, field, value)
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "aurora_orders.yaml")
    assert caught.value.field_path == named
    assert says in str(caught.value)


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError, match=r"x.yaml: \(top level\): expected a mapping"):
        parse_config(["not", "a", "mapping"], "x.yaml")


def test_file_errors_name_the_file(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("migration_id: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: \(file\): is not valid YAML"):
        load_config(broken)
    renamed = tmp_path / "other_name.yaml"
    renamed.write_text(yaml.safe_dump(_local()))
    with pytest.raises(ConfigError, match=r"migration_id: must match the file name \('other_name'\)"):
        load_config(renamed)


def test_params_spec_carries_yaml_defaults():
    config = parse_config(_local(), "local_demo.yaml")
    spec = config.params_spec()
    assert spec["databases"]["default"] == ["app"]
    assert spec["schemas"]["default"] == ["dms_sample"]
    assert spec["dry_run"]["default"] is False
    assert set(spec) == {"databases", "schemas", "cutover_not_before", "cutover_not_after", "dry_run"}


def test_run_conf_is_validated_against_the_migration():
    data = _local()
    data["databases"] = ["app", "reports"]
    config = parse_config(data, "local_demo.yaml")
    run = config.run_settings({"databases": ["reports"], "dry_run": True})
    assert run.databases == ["reports"] and run.dry_run is True and run.schemas == ["dms_sample"]
    assert config.run_settings(None).databases == ["app", "reports"]
    cases = [
        ({"databases": ["billing"]}, "databases", "not in the migration's databases"),
        ({"databases": []}, "databases", "at least one"),
        ({"schemas": "a\x00b"}, "schemas", "1 to 63 bytes"),
        ({"dry_run": "no"}, "dry_run", "true or false"),
        ({"cutover_not_before": "soon"}, "cutover_not_before", "ISO 8601"),
        ({"cutover_not_before": "2026-12-02T00:00:00+00:00", "cutover_not_after": "2026-12-01T00:00:00+00:00"},
         "cutover_not_after", "later than"),
        ({"databse": ["app"]}, "databse", "not a parameter"),
    ]
    for conf, named, says in cases:
        with pytest.raises(ConfigError) as caught:
            config.run_settings(conf)
        assert caught.value.field_path == named, conf
        assert says in str(caught.value), conf


def test_config_is_not_mutated_by_run_settings():
    data = _local()
    before = copy.deepcopy(data)
    parse_config(data, "local_demo.yaml").run_settings({"databases": ["app"]})
    assert data == before


# --- issue 8, scenario 17: the loader refuses what it used to accept silently -------------------------

LOCAL_AWS_ONLY = [
    ("cutover.dns_zone_id", "Z0123456789ABCDEFGHIJ"),
    ("cutover.dns_record_name", "db.example.com"),
    ("cutover.stop_source", True),
    ("cutover.keep_cidrs", ["10.0.0.0/16"]),
    ("source.kms_key_id", "arn:aws:kms:eu-west-1:614400000000:key/1111"),
    ("source.security_group_ids", ["sg-0a1b2c3d"]),
    ("target.parameter_group", "pg15-logical"),
    ("target.account_id", "263400000000"),
    ("set_logical_replication", True),
    ("dms.plugin", "test_decoding"),
]


@pytest.mark.safety
@pytest.mark.parametrize(("field", "value"), LOCAL_AWS_ONLY, ids=[b[0] for b in LOCAL_AWS_ONLY])
def test_aws_only_fields_are_refused_on_the_local_platform(field, value):
    data = _local()
    _set(data, field, value)
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "local_demo.yaml")
    assert caught.value.field_path == field
    assert "only used on platform aws" in str(caught.value)


@pytest.mark.safety
def test_duplicate_yaml_keys_are_refused_naming_the_key(tmp_path):
    text = (ROOT / "include" / "migrations" / "local_demo.yaml").read_text()
    top = tmp_path / "local_demo.yaml"
    top.write_text(text + "schemas: [public]\n")
    with pytest.raises(ConfigError) as caught:
        load_config(top)
    assert caught.value.field_path == "schemas" and "given twice" in str(caught.value)
    nested = tmp_path / "nested" / "local_demo.yaml"
    nested.parent.mkdir()
    nested.write_text(text.replace("  approval: auto", "  approval: auto\n  approval: manual"))
    with pytest.raises(ConfigError) as caught:
        load_config(nested)
    assert caught.value.field_path == "cutover.approval" and "given twice" in str(caught.value)


SCHEMA_CASES = [
    ("control_schema", ["a", "b"], "control_schema", "expected a string"),
    ("control_schema", "pg_catalog", "control_schema", "system schema"),
    ("control_schema", "information_schema", "control_schema", "system schema"),
    ("schemas", ["dms_sample", "pg_toast"], "schemas", "system schema"),
    ("schemas", ["pg_temp_3"], "schemas", "system schema"),
    ("schemas", ["information_schema"], "schemas", "system schema"),
    ("cutover.not_after", "2026-12-01T00:00:00+00:00", "cutover.not_after", "later than cutover.not_before"),
    ("dms.security_group_ids", "x", "dms.security_group_ids", "sg-"),
]


@pytest.mark.safety
@pytest.mark.parametrize(("field", "value", "named", "says"), SCHEMA_CASES,
                         ids=[f"{b[0]}-{i}" for i, b in enumerate(SCHEMA_CASES)])
def test_lists_system_schemas_and_reversed_windows_are_refused(field, value, named, says):
    data = _aurora() if field.startswith("dms.") else _local()
    data.setdefault("cutover", {})["not_before"] = "2026-12-02T00:00:00+00:00"
    _set(data, field, value)
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "x.yaml")
    assert caught.value.field_path == named
    assert says in str(caught.value)


@pytest.mark.safety
def test_pglogical_is_refused_because_the_slot_is_made_with_test_decoding():
    from migration.slots import plugin_for

    # The slot the DMS path creates decodes with test_decoding, whatever dms.plugin says.
    assert plugin_for("dms") == "test_decoding"
    data = _aurora()
    data["dms"]["plugin"] = "pglogical"
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "aurora_orders.yaml")
    assert caught.value.field_path == "dms.plugin"
    assert "pglogical is not supported" in str(caught.value)


# --- issue 8, scenario 8: schemas left out ------------------------------------------------------------

@pytest.mark.safety
def test_exclude_schemas_is_checked_and_kept():
    data = _local()
    data["exclude_schemas"] = ["public", "archive"]
    config = parse_config(data, "local_demo.yaml")
    assert config.exclude_schemas == ("public", "archive")
    for value, says in ((["dms_sample"], "also in schemas"), (["migration_control"], "control schema"),
                        (["pg_catalog"], "system schema")):
        data["exclude_schemas"] = value
        with pytest.raises(ConfigError) as caught:
            parse_config(data, "local_demo.yaml")
        assert caught.value.field_path == "exclude_schemas" and says in str(caught.value)


@pytest.mark.safety
def test_run_conf_may_only_narrow_the_yaml_schemas():
    data = _local()
    data["schemas"] = ["dms_sample", "extra"]
    config = parse_config(data, "local_demo.yaml")
    assert config.run_settings({"schemas": ["extra"]}).schemas == ["extra"]
    for schemas, says in ((["dms_sample", "public"], "not in the migration's schemas"),
                          (["migration_control"], "control schema"),
                          (["pg_catalog"], "not in the migration's schemas")):
        with pytest.raises(ConfigError) as caught:
            config.run_settings({"schemas": schemas})
        assert caught.value.field_path == "schemas" and says in str(caught.value), schemas


def _logical() -> dict:
    return yaml.safe_load((ROOT / "include" / "migrations" / "local_logical.yaml").read_text())


def test_logical_load_settings_default_and_load():
    assert load_config(ROOT / "include" / "migrations" / "local_logical.yaml").logical_load.jobs is None
    data = _logical()
    data["logical_load"] = {"jobs": 6, "dump_directory": "/var/lib/dumps"}
    config = parse_config(data, "local_logical.yaml")
    assert (config.logical_load.jobs, config.logical_load.dump_directory) == (6, "/var/lib/dumps")


@pytest.mark.parametrize(("settings", "field", "words"), [
    ({"jobs": 0}, "logical_load.jobs", "expected at least 1 and at most 64, got 0"),
    ({"jobs": 65}, "logical_load.jobs", "expected at least 1 and at most 64, got 65"),
    ({"jobs": True}, "logical_load.jobs", "expected a whole number"),
    ({"jobs": "4"}, "logical_load.jobs", "expected a whole number"),
    ({"dump_directory": "dumps"}, "logical_load.dump_directory", "expected an absolute path"),
    ({"dump_dir": "/x"}, "logical_load.dump_dir", "is not a known setting"),
])
def test_bad_logical_load_settings_name_the_field(settings, field, words):
    data = _logical()
    data["logical_load"] = settings
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "local_logical.yaml")
    assert caught.value.field_path == field and words in str(caught.value)


def test_logical_load_settings_need_the_pg_dump_load():
    data = _local()
    data["logical_load"] = {"jobs": 2}
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "local_demo.yaml")
    assert caught.value.field_path == "logical_load.jobs"
    assert "only used with initial_load pg_dump" in str(caught.value)


def test_a_dump_into_an_existing_aws_target_needs_no_key_or_parameter_group():
    """Nothing is shared or copied on the pg_dump path; a clone or a snapshot still needs both, named."""
    data = _aurora()
    data["initial_load"] = "pg_dump"
    for side in ("source", "target"):
        del data[side]["kms_key_id"]
    del data["target"]["parameter_group"]
    config = parse_config(data, "aurora_orders.yaml")
    assert (config.source.kms_key_id, config.target.kms_key_id, config.target.parameter_group) == (None, None, None)
    data["initial_load"] = "aurora_clone"
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "aurora_orders.yaml")
    assert caught.value.field_path == "source.kms_key_id"
    assert "is required for initial_load aurora_clone" in str(caught.value)
    data["source"]["kms_key_id"] = data["target"]["kms_key_id"] = "arn:aws:kms:eu-west-1:614400000000:key/1111"
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "aurora_orders.yaml")
    assert caught.value.field_path == "target.parameter_group"


@pytest.mark.parametrize("side", ["source", "target"])
def test_a_dump_on_aws_names_a_missing_identifier(side):
    data = _aurora()
    data["initial_load"] = "pg_dump"
    del data[side]["cluster_identifier"]
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "aurora_orders.yaml")
    assert caught.value.field_path == f"{side}.instance_identifier"
    assert f"{side}.cluster_identifier (Aurora) or {side}.instance_identifier (RDS) is required" in str(caught.value)
