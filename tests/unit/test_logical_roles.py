"""Pure rules of the logical load: which pg_dumpall statements create the missing roles, which roles are
reserved, and which version pairs are refused. Nothing runs; no stand-ins."""

from __future__ import annotations

import pytest

from migration.logical_roles import is_reserved_role, role_statements, version_problem

DUMPALL = "\n".join([
    '--',
    '-- Roles',
    '--',
    '',
    'CREATE ROLE app_writer;',
    'ALTER ROLE app_writer WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;',
    'CREATE ROLE "Report ""Reader""";',
    'ALTER ROLE "Report ""Reader""" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;',
    'CREATE ROLE app_group;',
    'ALTER ROLE app_group WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;',
    'CREATE ROLE postgres;',
    'ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS;',
    'CREATE ROLE other_team;',
    'ALTER ROLE app_writer SET search_path TO app, public;',
    '',
    '--',
    '-- Role memberships',
    '--',
    '',
    'GRANT app_group TO app_writer WITH INHERIT TRUE GRANTED BY postgres;',
    'GRANT app_group TO "Report ""Reader""" WITH INHERIT TRUE GRANTED BY postgres;',
    'GRANT other_team TO postgres WITH INHERIT TRUE GRANTED BY postgres;',
    'GRANT pg_read_all_data TO app_group WITH INHERIT TRUE GRANTED BY postgres;',
    '',
])


def test_only_the_missing_roles_their_settings_and_memberships_among_known_roles_are_kept():
    kept = role_statements(DUMPALL, create=["app_writer", 'Report "Reader"'], existing=["app_group", "postgres"])
    assert kept == [
        "CREATE ROLE app_writer;",
        "ALTER ROLE app_writer WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;",
        'CREATE ROLE "Report ""Reader""";',
        'ALTER ROLE "Report ""Reader""" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION '
        "NOBYPASSRLS;",
        "ALTER ROLE app_writer SET search_path TO app, public;",
        "GRANT app_group TO app_writer WITH INHERIT TRUE GRANTED BY postgres;",
        'GRANT app_group TO "Report ""Reader""" WITH INHERIT TRUE GRANTED BY postgres;',
    ]
    # A role the target lacks but nobody asked for, and memberships between existing roles, stay out.
    assert not any("other_team" in s for s in kept)
    assert not any("pg_read_all_data" in s for s in kept)


@pytest.mark.parametrize("name", ["pg_read_all_data", "pg_monitor", "rds_superuser", "rdsadmin", "rds_replication",
                                  "rdsrepladmin"])
def test_reserved_roles_are_never_created(name):
    assert is_reserved_role(name)


@pytest.mark.parametrize("name", ["app_writer", "postgres", "reporting", "pgbouncer_user"])
def test_ordinary_roles_are_not_reserved(name):
    assert not is_reserved_role(name)


def test_a_target_older_than_the_source_is_refused_and_same_or_newer_is_not():
    assert "older than the source's 16" in version_problem(16, 15)
    assert version_problem(15, 15) is None
    assert version_problem(15, 18) is None
