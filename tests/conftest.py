"""Fixtures shared by every test suite (unit, integration, scenarios).

Sections:
  1. Safety: no test can reach real AWS with real credentials.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# --- 1. Safety ------------------------------------------------------------------------------

# Dummy credentials and region; AWS config files are replaced by empty ones, so no profile,
# credential_process, SSO session or endpoint from ~/.aws can be picked up.
_SAFE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
_UNSAFE_AWS_ENV = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


@pytest.fixture(scope="session", autouse=True)
def _no_real_aws() -> Iterator[None]:
    """Point every test at dummy AWS credentials for the whole session.

    Runs before any other fixture, but not at import time: never create boto3 clients or
    sessions at module level in tests.
    """
    with pytest.MonkeyPatch.context() as mp:
        for name in _UNSAFE_AWS_ENV:
            mp.delenv(name, raising=False)
        for name, value in _SAFE_AWS_ENV.items():
            mp.setenv(name, value)
        yield
