"""docker-compose.yaml and the Dockerfile, checked without a Docker engine: structure, references
between services, mounts of the project folders, and agreement with the pinned versions and the demo."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def test_services_of_the_official_layout_are_there():
    assert {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-init",
            "airflow-db", "source-db"} <= set(SERVICES)
    commands = {name: svc.get("command") for name, svc in SERVICES.items()}
    assert commands["airflow-apiserver"] == "api-server" and commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor" and commands["airflow-triggerer"] == "triggerer"


def test_dependencies_name_existing_services_with_known_conditions():
    for name, svc in SERVICES.items():
        for dep, rule in (svc.get("depends_on") or {}).items():
            assert dep in SERVICES, f"{name} depends on unknown service {dep}"
            assert rule["condition"] in {"service_healthy", "service_completed_successfully", "service_started"}
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[dep], f"{dep} has no healthcheck for {name} to wait on"


def test_airflow_services_mount_the_project_and_share_one_config():
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        svc = SERVICES[name]
        mounts = {m.split(":")[0] for m in svc["volumes"]}
        assert {"./dags", "./plugins", "./include"} <= mounts
        env = svc["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert "/opt/airflow/plugins" in env["PYTHONPATH"]


def test_demo_connections_match_the_demo_migration():
    config = yaml.safe_load((ROOT / "include" / "migrations" / "local_demo.yaml").read_text())
    env = SERVICES["airflow-scheduler"]["environment"]
    for side in ("source", "target"):
        conn = json.loads(env[f"AIRFLOW_CONN_{config[side]['conn_id'].upper()}"])
        assert conn["conn_type"] == "postgres" and conn["schema"] in config["databases"]
    assert "wal_level=logical" in SERVICES["source-db"]["command"]


def test_image_matches_the_pinned_airflow():
    lock = (ROOT / "requirements.lock").read_text()
    pinned = re.search(r"^apache-airflow==(\S+)$", lock, re.M).group(1)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"FROM apache/airflow:{pinned}-python3.11" in dockerfile
    assert "requirements.lock" in dockerfile and "postgresql-15" in dockerfile
    assert SERVICES["airflow-scheduler"]["image"].endswith(f":{pinned}")
