"""LSN parsing, printing, ordering and arithmetic as 64-bit integers."""

from __future__ import annotations

import pytest

from migration.lsn import LSN, LSNError, find_redo_done


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("0/0", 0),
        ("1/87F75990", (1 << 32) | 0x87F75990),
        ("15/600002A8", (0x15 << 32) | 0x600002A8),
        ("FFFFFFFF/FFFFFFFF", 2**64 - 1),
        ("  16/b374d848 ", (0x16 << 32) | 0xB374D848),
    ],
)
def test_parse_gives_the_64_bit_number(text, number):
    assert LSN(text) == number
    assert LSN.parse(text) == number


def test_prints_as_postgres_does():
    assert str(LSN("16/b374d848")) == "16/B374D848"
    assert str(LSN("0/0")) == "0/0"
    assert str(LSN((1 << 32) | 0x0000ABCD)) == "1/ABCD"
    assert repr(LSN("1/87F75990")) == "LSN('1/87F75990')"
    assert LSN(str(LSN("A/1"))) == LSN("A/1")


def test_compares_as_numbers_not_as_text():
    # As text "9/0" > "10/0"; as LSNs it is the other way round.
    assert LSN("9/0") < LSN("10/0")
    assert LSN("0/FFFFFFFF") < LSN("1/0")
    assert LSN("1/87F75B28") > LSN("1/87F75990")
    assert sorted([LSN("10/0"), LSN("9/FFFFFFFF"), LSN("A/0")]) == [LSN("9/FFFFFFFF"), LSN("A/0"), LSN("10/0")]
    assert LSN("1/0") == LSN(1 << 32)


def test_subtracting_gives_bytes_and_adding_gives_an_lsn():
    distance = LSN("1/87F75B28") - LSN("1/87F75990")
    assert distance == 0x198
    assert type(distance) is int
    assert LSN("1/0") - LSN("0/FFFFFFFF") == 1
    assert LSN("0/10") - LSN("0/20") == -16
    moved = LSN("0/FFFFFFFF") + 1
    assert isinstance(moved, LSN) and str(moved) == "1/0"


@pytest.mark.parametrize(
    "bad",
    ["", "1", "1/", "/1", "1/2/3", "G/0", "1/0x10", "123456789/0", "0/123456789", "-1/0", "1 / 2"],
)
def test_bad_text_is_refused_naming_the_field(bad):
    with pytest.raises(LSNError, match=r"^captured_lsn: expected an LSN"):
        LSN.parse(bad, field="captured_lsn")


@pytest.mark.parametrize("bad", [None, True, 1.5, b"1/2", -1, 2**64])
def test_bad_values_are_refused_naming_the_field(bad):
    with pytest.raises(LSNError, match=r"^start_lsn: "):
        LSN.parse(bad, field="start_lsn")


def test_lsn_error_is_a_value_error():
    assert issubclass(LSNError, ValueError)


def test_find_redo_done_reads_the_server_log_line():
    log = (
        "LOG:  redo starts at 0/2000028\n"
        "LOG:  redo done at 0/2000100 system usage: CPU: user: 0.00 s\n"
        "LOG:  database system is ready to accept connections\n"
    )
    assert find_redo_done(log) == LSN("0/2000100")
    assert find_redo_done("LOG:  database system is ready to accept connections\n") is None


def test_find_redo_done_takes_the_clone_point_not_a_later_recovery():
    log = ("LOG:  redo done at 0/2000100 system usage: CPU\n"
           "LOG:  database system was interrupted\n"
           "LOG:  redo done at 0/5000028 system usage: CPU\n")
    assert find_redo_done(log) == LSN("0/2000100")
