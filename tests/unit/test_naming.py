"""Derived names are stable, legal and distinct, whatever the database is called."""

from migration import naming


def test_names_are_derived_not_timed():
    assert naming.slot_name("local_demo", "app") == "mig_local_demo_app"
    assert naming.slot_name("local_demo", "app") == naming.slot_name("local_demo", "app")
    assert naming.subscription_name("local_demo", "app") == "migsub_local_demo_app"


def test_odd_database_names_stay_legal_and_distinct():
    a = naming.slot_name("m", 'Weird DB"; drop')
    b = naming.slot_name("m", "weird_db_drop")
    assert a != b
    assert all(ch.isalnum() or ch == "_" for ch in a) and a == a.lower()


def test_long_names_fit_postgres_and_aws_limits():
    long_db = "d" * 63
    assert len(naming.slot_name("m" * 40, long_db)) <= 63
    assert naming.slot_name("m" * 40, long_db) != naming.slot_name("m" * 40, long_db[:-1] + "e")
    rid = naming.dms_instance_id("x" * 80)
    assert len(rid) <= 63 and rid[0].isalpha() and "--" not in rid and not rid.endswith("-")
    assert naming.aws_name("9lives", "db") == "m-9lives-db"


def test_one_rule_per_kind_of_name_whatever_layer_checks_it():
    """config, the PostgreSQL functions and the DMS requests refuse the same names (naming holds the rules)."""
    import pytest

    from migration.aws.common import check_identifier
    from migration.config import ConfigError, check_names
    from migration.dms.errors import DmsInputError
    from migration.dms.requests import check_identifier as check_dms_identifier
    from migration.dms.requests import check_pg_name, check_slot_name

    for bad in ("", "x" * 64, "é" * 32, "nul\x00"):
        assert naming.pg_name_problem(bad)
        with pytest.raises(ValueError, match="^schemas\\[0\\]: "):
            naming.validate_schemas([bad])
        with pytest.raises(ConfigError):
            check_names([bad], "f.yaml", "schemas")
        with pytest.raises(DmsInputError):
            check_pg_name(bad, "schema")
    for good in ("Sales Floor", "x" * 63, "é" * 31):
        assert naming.pg_name_problem(good) is None
        assert check_names([good], "f.yaml", "schemas") == [good] == naming.validate_schemas([good])
    for bad_slot in ("Mig", "mig-1", "m" * 64):
        with pytest.raises(ValueError, match="^slot_name: "):
            naming.validate_slot_name(bad_slot)
        with pytest.raises(DmsInputError):
            check_slot_name(bad_slot)
    for bad_id, limit in (("1db", 63), ("db--1", 63), ("db-", 63), ("d" * 64, 63)):
        assert not naming.is_aws_identifier(bad_id, max_length=limit)
        with pytest.raises(ValueError):
            check_identifier(bad_id, field="id", max_length=limit)
        with pytest.raises(DmsInputError):
            check_dms_identifier(bad_id, "id", limit=limit)
    assert naming.is_aws_identifier("orders-db-1", max_length=63)
