"""moto in server mode stands in for AWS (RDS, RAM, KMS, DMS, CloudWatch, Route53, EC2, STS).

Server mode, not the in-process mock, because the deferrable triggers use aiobotocore, which the
in-process mock does not intercept. Airflow AWS connections point at it through `endpoint_url`.
Gaps in moto are closed in the fixtures next to the tests that need them, each named there.
"""

from __future__ import annotations

import json
import os

import pytest
from moto.server import ThreadedMotoServer

from migration.localpg import free_port

# moto's default account; MOTO_ACCOUNT_ID would pin every request to one account, so it stays unset.
SOURCE_ACCOUNT = "123456789012"
TARGET_ACCOUNT = "222222222222"
REGION = "us-east-1"

pytestmark = pytest.mark.aws


@pytest.fixture(scope="session")
def moto_server():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    old = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION})
    yield endpoint
    server.stop()
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def moto_reset(moto_server):
    """Empty every moto backend before a test (moto's documented reset endpoint)."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")).read()
    return moto_server


def aws_conn_uri(endpoint: str, role_arn: str | None = None) -> str:
    """An Airflow AWS connection (as AIRFLOW_CONN_* JSON) routed to moto, optionally assuming a role."""
    # Assume-role calls ignore the global endpoint_url, so STS gets its own service_config entry.
    extra = {"endpoint_url": endpoint, "region_name": REGION, "service_config": {"sts": {"endpoint_url": endpoint}}}
    if role_arn:
        extra["role_arn"] = role_arn
    return json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra})


@pytest.fixture
def aws_connections(moto_reset, monkeypatch):
    """aws_source acts in the source account, aws_target assumes a role in the target account."""
    monkeypatch.setenv("AIRFLOW_CONN_AWS_SOURCE", aws_conn_uri(moto_reset))
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_TARGET",
        aws_conn_uri(moto_reset, role_arn=f"arn:aws:iam::{TARGET_ACCOUNT}:role/migration-target"),
    )
    return {"source": "aws_source", "target": "aws_target", "endpoint": moto_reset}
