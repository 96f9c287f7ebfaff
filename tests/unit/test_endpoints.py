"""Endpoint overrides from (possibly templated) operator arguments: pure logic, nothing stood in."""

from __future__ import annotations

import pytest

from migration.endpoints import endpoint_override


@pytest.mark.parametrize("host, port", [(None, None), ("", ""), ("None", "None")])
def test_unset_values_mean_the_connections_own(host, port):
    assert endpoint_override(host, port) == (None, None)


def test_a_rendered_port_becomes_a_number():
    assert endpoint_override("clone.example", "5433") == ("clone.example", 5433)
    assert endpoint_override("clone.example", 5433) == ("clone.example", 5433)


@pytest.mark.parametrize("port, message", [("abc", "port: expected a port number, got 'abc'"),
                                           ("0", "port: 0 is not a TCP port"),
                                           (70000, "port: 70000 is not a TCP port")])
def test_a_bad_port_names_the_field(port, message):
    with pytest.raises(ValueError, match=message):
        endpoint_override("h", port, port_field="port")
