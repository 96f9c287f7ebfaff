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
