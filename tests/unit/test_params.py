"""dag_phases.params.cheap_param: deep copies (Airflow makes one per operator) share the schema and copy the value.

Nothing is stood in: real Airflow Params and ParamsDicts.
"""

from __future__ import annotations

import copy

import pytest
from airflow.sdk import Param
from airflow.sdk.definitions.param import ParamsDict

from dag_phases.params import cheap_param


def test_a_deep_copy_shares_the_schema_and_owns_its_value():
    param = cheap_param(default=["app", "crm"], type="array", items={"type": "string", "enum": ["app", "crm"]},
                        description="Databases")
    copied = copy.deepcopy(ParamsDict({"databases": param})).get_param("databases")
    assert type(copied) is Param and copied is not param
    assert copied.schema is param.schema and copied.description == param.description
    assert copied.value == ["app", "crm"] and copied.value is not param.value
    copied.value.append("extra")
    assert param.value == ["app", "crm"]
    # A copy of the copy is made the same way, and still validates against the shared schema.
    again = copy.deepcopy(copied)
    assert again.schema is param.schema and again.resolve(["crm"]) == ["crm"]
    with pytest.raises(Exception, match="is not one of"):
        again.resolve(["unknown"])


def test_it_serializes_like_any_param():
    from airflow.serialization.serialized_objects import BaseSerialization

    param = cheap_param(default=False, type="boolean", title="Dry run")
    assert BaseSerialization._serialize_param(param) == BaseSerialization._serialize_param(
        Param(default=False, type="boolean", title="Dry run"))
