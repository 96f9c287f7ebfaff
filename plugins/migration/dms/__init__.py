"""AWS DMS as the CDC engine, one module per phase (the operators in ``operators/dms.py`` follow it).

- ``requests``: input checks and the request builders (table mappings, task settings, endpoints); pure.
- ``resources``: boto3 calls that find, create, reuse and delete the replication instance, endpoints,
  connection tests and tasks, with the task's reuse and start rules.
- ``monitoring``: table statistics, CloudWatch CDC latency, validation failures, and the state
  functions behind the deferrable waits.
- ``cutover``: the critical section's engine (``DmsCdcEngine``, ``DmsCdcDatabase``), the drain marker and
  stopping tasks.
- ``errors``: the exceptions.

Functions take boto3 clients (``dms``, ``cloudwatch``) or psycopg connections and plain values;
nothing here imports Airflow. The poll-check entry points that open clients and connections from
Airflow connection ids live in ``triggers/checks.py``.

Every name (instance, endpoints, task) is derived by ``migration.naming`` from the migration id
and database, so a rerun finds what an earlier try created instead of creating it again.
"""
