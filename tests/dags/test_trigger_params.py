"""The trigger form and `POST dagRuns` refuse unknown databases and schemas before a run exists.

Airflow 3.3 checks a run's conf when the run is created: `create_dagrun` of the scheduler's DAG (the
serialized one, which `POST dagRuns`, the form and `dag.test()` all use) merges the conf into the DAG's
Params and validates them, and the API answers 400 on the error. These tests build each shipped YAML's
DAG, serialize it as the DAG processor does and run that same merge-and-validate; and they run the SDK
DAG's own ParamsDict. Nothing runs and nothing is stood in.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from airflow.exceptions import ParamValidationError
from airflow.sdk.exceptions import ParamValidationError as SdkParamValidationError
from airflow.serialization.serialized_objects import DagSerialization

from dag_factory import build_dag
from migration.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
YAMLS = sorted((ROOT / "include" / "migrations").glob("*.yaml"))


def scheduler_params(dag):
    """The Params the scheduler side holds, as `create_dagrun` reads them."""
    return DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag)).params


def refused(dag, conf) -> str:
    """The error both Airflow sides raise for ``conf``: the scheduler's merge-and-validate, and the SDK
    ParamsDict, which checks a value as it is set."""
    with pytest.raises(ParamValidationError) as server:
        scheduler_params(dag).deep_merge(conf).validate()
    sdk = copy.deepcopy(dag.params)
    with pytest.raises(SdkParamValidationError) as task_side:
        for key, value in conf.items():
            sdk[key] = value
    assert str(task_side.value).split(":")[0] == str(server.value).split(":")[0]
    return str(server.value)


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_unknown_database_is_refused_naming_the_field(path):
    config = load_config(path)
    dag = build_dag(config)
    message = refused(dag, {"databases": ["nope"]})
    assert "databases" in message and "nope" in message


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_unknown_or_control_schema_is_refused_naming_the_field(path):
    config = load_config(path)
    dag = build_dag(config)
    for bad in ("nope", config.control_schema, "pg_catalog"):
        message = refused(dag, {"schemas": [bad]})
        assert "schemas" in message and bad in message


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_a_repeated_name_and_an_empty_list_are_refused(path):
    config = load_config(path)
    dag = build_dag(config)
    first = config.databases[0]
    assert "databases" in refused(dag, {"databases": [first, first]})
    assert "databases" in refused(dag, {"databases": []})
    assert "schemas" in refused(dag, {"schemas": "not a list"})


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
def test_the_yamls_names_and_any_subset_pass(path):
    config = load_config(path)
    dag = build_dag(config)
    params = scheduler_params(dag)
    assert params.deep_merge({}).validate()["databases"] == list(config.databases)
    for db in config.databases:
        assert params.deep_merge({"databases": [db]}).validate()["databases"] == [db]
    assert params.deep_merge({"schemas": list(config.schemas)[-1:]}).validate()["schemas"] == list(config.schemas)[-1:]
    # The form shows the YAML's names as a multi-select (Airflow's UI does that for an array with examples).
    for name, allowed in (("databases", config.databases), ("schemas", config.schemas)):
        schema = params.get_param(name).schema
        assert schema["examples"] == list(allowed) and schema["items"]["enum"] == list(allowed)


def test_validate_run_still_refuses_what_a_schema_cannot_say():
    """The cutover window's order is not a Param schema's business: the Params pass it, validate_run refuses."""
    config = load_config(ROOT / "include" / "migrations" / "local_demo.yaml")
    dag = build_dag(config)
    conf = {"cutover_not_before": "2026-12-02T03:00:00+00:00", "cutover_not_after": "2026-12-02T02:00:00+00:00"}
    scheduler_params(dag).deep_merge(conf).validate()
    with pytest.raises(ConfigError, match="cutover_not_after"):
        config.run_settings(conf)
