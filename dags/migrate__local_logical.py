"""Airflow DAG for include/migrations/local_demo.yaml (the file name names the YAML).

To add a migration: write include/migrations/<id>.yaml and copy this file to dags/migrate__<id>.py.
"""

from dag_factory import airflow_dag_for_file

dag = airflow_dag_for_file(__file__)
