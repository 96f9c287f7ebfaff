"""Open psycopg 3 connections from Airflow Postgres connections, per database and endpoint."""

from __future__ import annotations

import psycopg
from airflow.sdk import BaseHook


def conninfo_for(conn_id: str, *, dbname: str | None = None, host: str | None = None,
                 port: int | None = None) -> str:
    """libpq connection string for an Airflow connection, optionally for another database or endpoint.

    ``host``/``port`` override the connection's own, for endpoints known only at run time
    (an Aurora clone's writer endpoint is read from AWS, not configured).
    """
    conn = BaseHook.get_connection(conn_id)
    params = {
        "host": host or conn.host or "127.0.0.1",
        "port": port or conn.port or 5432,
        "dbname": dbname or conn.schema or "postgres",
        "user": conn.login or "postgres",
        "connect_timeout": 10,
        "application_name": "pg-account-migration",
    }
    if conn.password:
        params["password"] = conn.password
    extra = conn.extra_dejson or {}
    for key in ("sslmode", "sslrootcert", "options"):
        if key in extra:
            params[key] = extra[key]
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in params.items()})


def connect(conn_id: str, *, dbname: str | None = None, host: str | None = None, port: int | None = None,
            autocommit: bool = True) -> psycopg.Connection:
    conn = psycopg.connect(conninfo_for(conn_id, dbname=dbname, host=host, port=port), autocommit=autocommit)
    # The cutover's fence starts new sessions of the migration's own login read-only in the migrated
    # databases (so that an application using that login cannot write); the project's own sessions can.
    conn.execute("SET default_transaction_read_only = off")
    if not autocommit:
        conn.commit()
    return conn
