"""The app registry: which credentials to keep fresh, read from a Secrets Manager secret.

The secret's value is a JSON object, one entry per credential, keyed by the ``app_id``
consumers ask for:

    {
      "wx1234567890abcdef": {"secret": "..."},
      "wxabcdef1234567890": {"type": "stable", "secret": "..."},
      "ww0123456789:1000002": {"type": "wecom", "corpid": "ww0123456789", "secret": "..."}
    }
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import RegistryError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

CLASSIC = "classic"
STABLE = "stable"
WECOM = "wecom"
TYPES = (CLASSIC, STABLE, WECOM)
TICKET_TYPES = ("jsapi", "wx_card", "agent_config")
_KEY = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
_ENTRY_KEYS = {"type", "secret", "appid", "corpid", "agentid", "tickets", "enabled"}


@dataclass(frozen=True, slots=True)
class AppConfig:
    """One credential the refresher owns. ``repr`` never shows the secret."""

    app_id: str
    type: str
    appid: str  # WeChat's appid, or the WeCom corpid
    secret: str = field(repr=False)
    agentid: str | None = None
    tickets: tuple[str, ...] = ()


def parse_registry(text: str, *, source: str = "the registry secret") -> dict[str, AppConfig]:
    """Validate the registry JSON; errors name the entry and the field, never a secret."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError, RecursionError) as exc:
        raise RegistryError(
            f"{source} is not valid JSON ({exc.__class__.__name__} at line "
            f"{getattr(exc, 'lineno', '?')}): it must be an object mapping each app_id to "
            '{"secret": "..."}; see the README\'s registry format.'
        ) from None
    if isinstance(data, dict) and isinstance(data.get("apps"), dict) and len(data) == 1:
        data = data["apps"]
    if not isinstance(data, dict):
        raise RegistryError(
            f"{source} must be a JSON object mapping app_id to an entry, not "
            f"{type(data).__name__}; see the README's registry format."
        )
    if not data:
        raise RegistryError(
            f"{source} lists no apps: put one entry per app, e.g. "
            '{"wx1234567890abcdef": {"secret": "..."}} (aws secretsmanager put-secret-value).'
        )
    apps: dict[str, AppConfig] = {}
    for app_id, entry in data.items():
        config = _parse_entry(app_id, entry, source)
        if config is not None:
            apps[app_id] = config
    return apps


def _parse_entry(app_id: str, entry: Any, source: str) -> AppConfig | None:
    where = f"{source}, entry {app_id!r}"
    if not _KEY.match(app_id):
        raise RegistryError(
            f"{source} has an entry key that is not a valid app_id (1-128 of A-Z a-z 0-9 _ . : -)."
        )
    if not isinstance(entry, dict):
        raise RegistryError(f'{where}: must be an object like {{"secret": "..."}}.')
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise RegistryError(f"{where}: unknown field(s) {unknown}; known: {sorted(_ENTRY_KEYS)}.")
    if entry.get("enabled", True) is False:
        return None
    kind = entry.get("type", CLASSIC)
    if kind in ("official_account", "mini_program"):
        kind = CLASSIC
    if kind not in TYPES:
        raise RegistryError(f"{where}: type {kind!r} is not one of {list(TYPES)}.")
    secret = entry.get("secret")
    if not isinstance(secret, str) or not secret.strip():
        raise RegistryError(f'{where}: "secret" is missing or empty.')
    if kind == WECOM:
        appid = entry.get("corpid")
        if not isinstance(appid, str) or not appid.strip():
            raise RegistryError(f'{where}: a WeCom entry needs "corpid" (and its app\'s secret).')
    else:
        appid = entry.get("appid", app_id)
        if not isinstance(appid, str) or not appid.strip():
            raise RegistryError(f'{where}: "appid" must be a non-empty string.')
    agentid = entry.get("agentid")
    if agentid is not None and not isinstance(agentid, (str, int)):
        raise RegistryError(f'{where}: "agentid" must be a string or number.')
    tickets = entry.get("tickets", [])
    if not isinstance(tickets, list) or any(t not in TICKET_TYPES for t in tickets):
        raise RegistryError(f'{where}: "tickets" must be a list drawn from {list(TICKET_TYPES)}.')
    return AppConfig(
        app_id=app_id,
        type=kind,
        appid=appid.strip(),
        secret=secret.strip(),
        agentid=None if agentid is None else str(agentid),
        tickets=tuple(tickets),
    )


class RegistryLoader:
    """Reads and parses the registry secret, caching it briefly per execution environment."""

    def __init__(
        self,
        client: SecretsManagerClient,
        secret_id: str,
        *,
        cache_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._secret_id = secret_id
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cached: tuple[float, dict[str, AppConfig]] | None = None
        self._lock = threading.Lock()

    def load(self) -> dict[str, AppConfig]:
        with self._lock:
            now = self._clock()
            if self._cached is not None and now < self._cached[0]:
                return self._cached[1]
            apps = parse_registry(self._read(), source=f"registry secret {self._secret_id!r}")
            self._cached = (now + self._cache_seconds, apps)
            return apps

    def _read(self) -> str:
        try:
            response = self._client.get_secret_value(SecretId=self._secret_id)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            raise RegistryError(
                f"Could not read registry secret {self._secret_id!r} ({code}). Check "
                "WECHAT_APPS_SECRET_ID, that the secret exists in this region and has a value "
                "(aws secretsmanager put-secret-value), and that the refresher may read it."
            ) from None
        text = response.get("SecretString")
        if text is None:
            raise RegistryError(
                f"Registry secret {self._secret_id!r} has no SecretString: store the registry "
                "as JSON text, not binary."
            )
        return text
