# The Airflow image plus what the migration DAGs need: the pinned providers and, for the local
# platform, the PostgreSQL 15 server binaries (pg_basebackup, pg_ctl) to start the clone.
FROM apache/airflow:3.3.2-python3.11
USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 postgresql-client-15 \
 && rm -rf /var/lib/apt/lists/*
ENV PG_BINDIR=/usr/lib/postgresql/15/bin
USER airflow
COPY requirements.lock /requirements.lock
RUN pip install --no-cache-dir -r /requirements.lock
