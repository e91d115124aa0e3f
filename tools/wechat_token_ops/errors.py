"""Why an operator command could not be made. Every one of them exits 2 ("unknown").

    OpsError                  base class: the check or the refresh could not be made
    ├── UsageError            the command cannot run as given: a missing or bad setting
    ├── AWSAccessError        DynamoDB could not be scanned, the refresher invoked, or a
    │                         registry secret read or written (names, region, permissions)
    ├── ConcurrentEditError   a registry secret kept changing while ``apps`` wrote it
    └── RecordSchemaError     a stored record does not match this version's schema

Messages say what to check and never hold a token or a secret.
"""

from __future__ import annotations


class OpsError(Exception):
    """Base class of every error ``wechat-token`` reports with exit code 2."""


class UsageError(OpsError):
    """The command cannot run as given (missing setting, bad value)."""


class AWSAccessError(OpsError):
    """An AWS call the command needs failed: no client, no table, no permission."""


class ConcurrentEditError(OpsError):
    """A registry secret changed under ``apps add``/``remove`` on every attempt."""


class RecordSchemaError(OpsError):
    """A stored record does not match the record schema this version knows."""
