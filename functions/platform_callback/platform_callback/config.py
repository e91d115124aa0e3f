"""The platforms' push credentials, read from the app registry secret.

The registry (the refresher's, ``WECHAT_APPS_SECRET_ID``) is one JSON object of entries
keyed by app id; a third-party platform's entry is keyed by its component appid::

    "wxcomponent0001": {"type": "component", "secret": "<component_appsecret>",
                        "token": "<message token>", "encoding_aes_key": "<43 characters>"}

The callback needs only ``token`` and ``encoding_aes_key`` of the ``component`` entries and
ignores every other entry (the refresher validates those). A bad component entry is
skipped and logged by its key and the field at fault, never a value; the others stay
usable. Nothing here ever logs, returns or raises a token, a key or a secret: the parsed
:class:`~platform_callback.push.ComponentConfig` objects hide them too.

:class:`ComponentConfigs` caches the parsed configurations for ``cache_seconds`` (60) per
execution environment. A lookup never reads the secret early: a flood of pushes naming
unknown AppIds costs no Secrets Manager call. When the secret cannot be read, the last
good copy is kept (and the read retried after ``retry_seconds``); when the current
version holds no JSON object, the previous one (AWSPREVIOUS) is used, as the refresher does.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from platform_callback.errors import ConfigUnavailable
from platform_callback.push import ComponentConfig
from platform_callback.telemetry import logger as default_logger
from platform_callback.wxcrypt import BadEncodingAESKey

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = [
    "COMPONENT_TYPE",
    "ComponentConfigs",
    "ComponentRegistry",
    "parse_component_configs",
]

COMPONENT_TYPE: Final = "component"
_KEY: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")


@dataclass(frozen=True, slots=True)
class ComponentRegistry:
    """The usable platforms by component appid, and the refused entries (key -> why)."""

    configs: Mapping[str, ComponentConfig] = field(default_factory=dict)
    invalid: Mapping[str, str] = field(default_factory=dict)
    previous_version: bool = False

    def get(self, component_appid: str) -> ComponentConfig | None:
        """The platform's configuration, or None for an AppId the registry does not list."""
        return self.configs.get(component_appid)

    def __len__(self) -> int:
        return len(self.configs)


def parse_component_configs(text: str) -> ComponentRegistry:
    """The ``component`` entries of a registry document.

    Raises :class:`ConfigUnavailable` when the document is not a JSON object of entries
    (the message names the problem, never quotes the document).
    """
    data: Any = None
    problem: str | None = None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError, RecursionError) as exc:
        problem = f"the registry secret is not valid JSON ({type(exc).__name__})"
    if problem is not None:
        raise ConfigUnavailable(problem)
    # The refresher also accepts {"apps": {...}}.
    if isinstance(data, dict) and len(data) == 1 and isinstance(data.get("apps"), dict):
        data = data["apps"]
    if not isinstance(data, dict):
        raise ConfigUnavailable(
            f"the registry secret must be a JSON object of entries, not {type(data).__name__}"
        )
    configs: dict[str, ComponentConfig] = {}
    invalid: dict[str, str] = {}
    for key in sorted(data, key=str):
        entry = data[key]
        if not isinstance(entry, dict) or entry.get("type") != COMPONENT_TYPE:
            continue
        if entry.get("enabled", True) is False:
            continue
        config, why = _component(str(key), entry)
        if config is None:
            invalid[_safe_key(key)] = why
        else:
            configs[config.component_appid] = config
    return ComponentRegistry(configs, invalid)


def _component(key: str, entry: Mapping[str, Any]) -> tuple[ComponentConfig | None, str]:
    """The configuration of one component entry, or None and the reason (a field name and
    what it must be: never its value)."""
    if not _KEY.fullmatch(key):
        return None, "the key is not a component appid (1-128 of A-Z a-z 0-9 _ . : -)"
    appid = entry.get("appid", key)
    if appid != key:
        return None, '"appid" differs from the key: key a platform by its component appid'
    token = entry.get("token")
    if not isinstance(token, str) or not token.strip():
        return None, '"token" (the message-check Token) is missing or empty'
    aes_key = entry.get("encoding_aes_key")
    if not isinstance(aes_key, str) or not aes_key.strip():
        return None, '"encoding_aes_key" is missing or empty'
    problem = "encoding_aes_key"
    try:
        return ComponentConfig(key, token.strip(), aes_key.strip()), ""
    except BadEncodingAESKey as exc:
        problem = f'"encoding_aes_key": {exc}'  # its length only, never the value
    except ValueError:
        problem = '"token" or the key is not usable'
    return None, problem


def _safe_key(key: object) -> str:
    text = str(key)
    return text if _KEY.fullmatch(text) else "<invalid key>"


class ComponentConfigs:
    """The platforms' configurations from the registry secret, cached per environment.

    ``lookup`` is what :func:`platform_callback.push.verify_push` takes as ``configs``.
    Thread-safe (one read of the secret at a time).
    """

    def __init__(
        self,
        client: SecretsManagerClient,
        secret_id: str,
        *,
        cache_seconds: float = 60.0,
        retry_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        log: Logger = default_logger,
    ) -> None:
        if not secret_id:
            raise ValueError("the registry secret id is required (WECHAT_APPS_SECRET_ID)")
        self._client = client
        self._secret_id = secret_id
        self._cache_seconds = cache_seconds
        self._retry_seconds = retry_seconds
        self._clock = clock
        self._log = log
        self._lock = threading.Lock()
        self._cached: ComponentRegistry | None = None
        self._fresh_until = float("-inf")
        self._retry_at = float("-inf")
        self.reads = 0

    def lookup(self, component_appid: str) -> ComponentConfig | None:
        """The platform's configuration, or None for an AppId the registry does not list.

        Raises :class:`ConfigUnavailable` when no copy of the registry could ever be read.
        """
        return self.current().get(component_appid)

    def current(self) -> ComponentRegistry:
        """The registry's component entries (a cached copy while it is fresh)."""
        with self._lock:
            now = self._clock()
            if self._cached is not None and now < self._fresh_until:
                return self._cached
            if now < self._retry_at:
                return self._stale_or_raise(ConfigUnavailable("the registry secret is unreadable"))
            failure: ConfigUnavailable | None = None
            try:
                registry = self._load()
            except ConfigUnavailable as exc:
                failure = exc
            if failure is not None:
                self._retry_at = now + self._retry_seconds
                return self._stale_or_raise(failure)
            self._cached, self._fresh_until = registry, now + self._cache_seconds
            self._report(registry)
            return registry

    def _stale_or_raise(self, failure: ConfigUnavailable) -> ComponentRegistry:
        if self._cached is None:
            raise failure
        self._log.warning(
            f"platform configuration: {failure}; using the copy read earlier",
            extra={"reason": failure.reason},
        )
        return self._cached

    def _report(self, registry: ComponentRegistry) -> None:
        if registry.previous_version:
            self._log.error(
                "platform configuration: the current registry version holds no JSON object; "
                "using the previous version (AWSPREVIOUS) until it is fixed",
                extra={"reason": "registry_fallback"},
            )
        for key, why in registry.invalid.items():
            self._log.error(
                f"registry entry {key}: skipped: {why}",
                extra={"reason": "invalid_component_entry", "component_appid": key},
            )

    def _load(self) -> ComponentRegistry:
        current = self._read(None)
        try:
            return parse_component_configs(current)
        except ConfigUnavailable as exc:
            problem = exc
        try:
            previous = parse_component_configs(self._read("AWSPREVIOUS"))
        except ConfigUnavailable:
            raise problem from None
        return ComponentRegistry(previous.configs, previous.invalid, previous_version=True)

    def _read(self, stage: str | None) -> str:
        self.reads += 1
        failure: str | None = None
        text: object = None
        try:
            if stage is None:
                answer = self._client.get_secret_value(SecretId=self._secret_id)
            else:
                answer = self._client.get_secret_value(SecretId=self._secret_id, VersionStage=stage)
            text = answer.get("SecretString")
        except ClientError as exc:
            failure = str(exc.response.get("Error", {}).get("Code") or "ClientError")
        except BotoCoreError as exc:
            failure = type(exc).__name__
        if failure is not None:
            raise ConfigUnavailable(f"GetSecretValue failed ({failure})")
        if not isinstance(text, str):
            raise ConfigUnavailable("the registry secret has no SecretString")
        return text
