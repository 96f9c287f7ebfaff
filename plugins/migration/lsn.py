"""PostgreSQL log sequence numbers, parsed and compared as 64-bit integers."""

from __future__ import annotations

import logging
import re

_LSN_RE = re.compile(r"^\s*([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})\s*$")
_MAX = 2**64 - 1

log = logging.getLogger(__name__)


class LSNError(ValueError):
    """Raised for text that is not an LSN of the form X/Y (hexadecimal, 32 bits each)."""


class LSN(int):
    """An LSN such as ``16/B374D848``: an ``int`` that prints the way PostgreSQL does.

    Subtracting two LSNs gives a plain ``int`` (a distance in bytes).
    """

    def __new__(cls, value: str | int | LSN, *, field: str = "lsn") -> LSN:
        if isinstance(value, bool):
            raise LSNError(f"{field}: expected an LSN like '16/B374D848', got {value!r}")
        if isinstance(value, int):
            number = int(value)
        elif isinstance(value, str):
            match = _LSN_RE.match(value)
            if not match:
                raise LSNError(
                    f"{field}: expected an LSN like '16/B374D848' "
                    f"(two hexadecimal numbers of at most 8 digits), got {value!r}"
                )
            number = (int(match.group(1), 16) << 32) | int(match.group(2), 16)
        else:
            raise LSNError(f"{field}: expected an LSN string or integer, got {type(value).__name__}")
        if not 0 <= number <= _MAX:
            raise LSNError(f"{field}: {number} is outside the 64-bit LSN range")
        return super().__new__(cls, number)

    def __str__(self) -> str:
        return f"{int(self) >> 32:X}/{int(self) & 0xFFFFFFFF:X}"

    def __repr__(self) -> str:
        return f"LSN('{self}')"

    def __add__(self, other: int) -> LSN:
        return LSN(int(self) + int(other))

    def __sub__(self, other: int) -> int:
        return int(self) - int(other)

    @classmethod
    def parse(cls, value: str | int | LSN | None, *, field: str = "lsn") -> LSN:
        if value is None:
            raise LSNError(f"{field}: an LSN is required, got nothing")
        return cls(value, field=field)


_REDO_DONE_RE = re.compile(r"redo done at ([0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8})")


def find_redo_done(log_text: str) -> LSN | None:
    """The clone point: the first ``redo done at X/Y`` of a clone's log, or None.

    A later line comes from a later crash recovery of the clone itself, past its own writes, not from the copy.
    """
    found = [LSN(match) for match in _REDO_DONE_RE.findall(log_text)]
    if len(set(found)) > 1:
        log.warning("The clone's log has %d different 'redo done at' lines (%s); using the first, %s",
                    len(set(found)), ", ".join(map(str, found)), found[0])
    return found[0] if found else None
