"""Errors of the DMS package: bad input (naming the field) and DMS states the migration cannot continue from."""

from __future__ import annotations


class DmsError(RuntimeError):
    """A DMS resource is in a state the migration cannot continue from; the message says what to do."""


class DmsInputError(ValueError):
    """Bad input (an identifier, LSN, schema or setting); the message names the field."""


class DmsValidationFailed(DmsError):
    """DMS validation found differences; the message summarises tables, keys and failure types."""


class DmsDrainTimeout(DmsError):
    """CDC did not apply past the source's final LSN in time."""

