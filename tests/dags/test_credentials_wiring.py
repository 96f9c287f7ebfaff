"""Scenario 13 (credentials), the wiring: `source.replication_conn_id` reaches the clone and the
subscription, a local subscription keeps its password in a password file of the clone, and the field
is checked like every other. Built from the project's YAML files; nothing runs. Stand-ins: none."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dag_factory import build_dag
from migration.config import ConfigError, parse_config

ROOT = Path(__file__).resolve().parents[2]
YAMLS = sorted((ROOT / "include" / "migrations").glob("*.yaml"))

pytestmark = pytest.mark.safety


def _config(path: Path, **source: str):
    data = yaml.safe_load(path.read_text())
    data["source"].update(source)
    return parse_config(data, path.name)


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.stem)
@pytest.mark.parametrize("replication", ["cdc_login", None])
def test_clone_and_subscription_connect_as_the_replication_connection(path, replication):
    config = _config(path, **({"replication_conn_id": replication} if replication else {}))
    assert config.source.replication_conn_id == replication
    dag = build_dag(config)
    if config.initial_load == "pg_basebackup":
        clone = dag.get_task("clone_source")
        assert clone.replication_conn_id == replication and clone.source_conn_id == config.source.conn_id
    if config.cdc_engine == "native":
        subscribe = dag.get_task("start_cdc.create_subscription")
        assert subscribe.replication_conn_id == replication
        local = config.initial_load == "pg_basebackup"
        assert subscribe.passfile_directory == (config.target.data_directory if local else None)


def test_replication_conn_id_is_checked():
    demo = ROOT / "include" / "migrations" / "local_demo.yaml"
    with pytest.raises(ConfigError, match=r"source\.replication_conn_id.*expected an Airflow connection id"):
        _config(demo, replication_conn_id="not a connection id!")
    data = yaml.safe_load(demo.read_text())
    data["target"]["replication_conn_id"] = "cdc_login"
    with pytest.raises(ConfigError, match=r"target\.replication_conn_id"):
        parse_config(data, demo.name)
