"""The app registry: which credentials to keep fresh, read from a Secrets Manager secret.

The secret's value is a JSON object, one entry per credential, keyed by the ``app_id``
consumers ask for:

    {
      "wx1234567890abcdef": {"secret": "..."},
      "wxabcdef1234567890": {"type": "stable", "secret": "..."},
      "ww0123456789:1000002": {"type": "wecom", "corpid": "ww0123456789", "secret": "..."},
      "wxcomponent000001": {"type": "component", "secret": "...", "token": "...",
                            "encoding_aes_key": "<43 characters>"}
    }

A ``component`` entry is a third-party platform: its component_appsecret, and the message
token and EncodingAESKey its push callback verifies and decrypts with. Its authorizers are
not listed here: they come and go with the merchants' authorizations (DynamoDB).

A bad entry fails that entry alone (``Registry.invalid``, by key, never the secret); two
entries for one WeChat app (same type and appid, or same corpid and secret) would evict each
other's tokens, so every entry after the first (in key order) is refused, naming both keys.
When the current secret version cannot be read or parsed, the previous one (AWSPREVIOUS)
is used and the run says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, ItemsView, Iterator, ValuesView
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wechat_token.record import TICKET_TYPES

from .errors import RegistryError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

logger = logging.getLogger("wechat_token.refresher")

CLASSIC = "classic"
STABLE = "stable"
WECOM = "wecom"
COMPONENT = "component"
TYPES = (CLASSIC, STABLE, WECOM, COMPONENT)
# Not a registry type: an authorizer of a component, known from DynamoDB.
AUTHORIZER = "authorizer"
_KEY = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
_ENTRY_KEYS = {
    "type", "secret", "appid", "corpid", "agentid", "tickets", "enabled", "token",
    "encoding_aes_key",
}  # fmt: skip
_AES_KEY = re.compile(r"^[A-Za-z0-9+/]{43}$")


@dataclass(frozen=True, slots=True)
class AppConfig:
    """One credential the refresher owns. ``repr`` never shows the secret."""

    app_id: str
    type: str
    appid: str  # WeChat's appid, or the WeCom corpid
    secret: str = field(repr=False)
    agentid: str | None = None
    tickets: tuple[str, ...] = ()
    # A component: the push callback's message token and EncodingAESKey.
    message_token: str | None = field(default=None, repr=False)
    encoding_aes_key: str | None = field(default=None, repr=False)
    # An authorizer: its component's registry entry.
    component: AppConfig | None = None

    @classmethod
    def authorizer(cls, component: AppConfig, authorizer_appid: str) -> AppConfig:
        """The credential of one merchant's account, refreshed through ``component``."""
        return cls(
            app_id=f"{component.app_id}:{authorizer_appid}",
            type=AUTHORIZER,
            appid=authorizer_appid,
            secret=component.secret,
            component=component,
        )

    @property
    def identity(self) -> tuple[str, ...]:
        """What WeChat counts as one app: one token lives per identity."""
        if self.type == WECOM:
            # One token per (corpid, app secret); the secret's digest, never the secret.
            return (WECOM, self.appid, hashlib.sha256(self.secret.encode()).hexdigest())
        return (self.type, self.appid)


@dataclass(frozen=True, slots=True)
class Registry:
    """The usable entries, the refused ones (key -> reason), and where they came from."""

    apps: dict[str, AppConfig]
    invalid: dict[str, str] = field(default_factory=dict)
    fallback: bool = False

    def __len__(self) -> int:
        return len(self.apps)

    def __iter__(self) -> Iterator[str]:
        return iter(self.apps)

    def __contains__(self, key: object) -> bool:
        return key in self.apps

    def __getitem__(self, key: str) -> AppConfig:
        return self.apps[key]

    def items(self) -> ItemsView[str, AppConfig]:
        return self.apps.items()

    def values(self) -> ValuesView[AppConfig]:
        return self.apps.values()


def parse_registry(text: str, *, source: str = "the registry secret") -> Registry:
    """Validate the registry JSON; errors name the entry and the field, never a secret.

    A document that is not a JSON object of entries is a ``RegistryError``; a bad entry is
    reported in ``Registry.invalid`` and the others stay usable.
    """
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
    invalid: dict[str, str] = {}
    owners: dict[tuple[str, ...], str] = {}
    for app_id in sorted(data, key=str):
        try:
            config = _parse_entry(app_id, data[app_id], source)
        except RegistryError as exc:
            invalid[_safe_key(app_id)] = str(exc)
            continue
        if config is None:
            continue
        first = owners.setdefault(config.identity, app_id)
        if first != app_id:
            invalid[app_id] = (
                f"{source}: entries {first!r} and {app_id!r} are the same WeChat app "
                f"({config.type} {config.appid}); two refreshers of one app evict each other's "
                f"tokens, so {app_id!r} is refused: remove one of them."
            )
            continue
        apps[app_id] = config
    return Registry(apps, invalid)


def _safe_key(app_id: Any) -> str:
    text = str(app_id)
    return text if _KEY.match(text) else "<invalid key>"


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
    message_token, aes_key = _component_keys(entry, kind, where)
    return AppConfig(
        app_id=app_id,
        type=kind,
        appid=appid.strip(),
        secret=secret.strip(),
        agentid=None if agentid is None else str(agentid),
        tickets=tuple(tickets),
        message_token=message_token,
        encoding_aes_key=aes_key,
    )


def _component_keys(entry: dict[str, Any], kind: str, where: str) -> tuple[str | None, str | None]:
    """A component's message token and EncodingAESKey, checked (never echoed)."""
    token, aes_key = entry.get("token"), entry.get("encoding_aes_key")
    if kind != COMPONENT:
        if token is not None or aes_key is not None:
            raise RegistryError(f'{where}: "token" and "encoding_aes_key" are for components.')
        return None, None
    if not isinstance(token, str) or not token.strip():
        raise RegistryError(
            f'{where}: a component needs "token", the message token set on the platform.'
        )
    if not isinstance(aes_key, str) or not _AES_KEY.match(aes_key.strip()):
        raise RegistryError(
            f'{where}: "encoding_aes_key" must be the 43 letters, digits, + and / of the '
            "platform's EncodingAESKey."
        )
    if entry.get("tickets"):
        raise RegistryError(f'{where}: a component has no JS-SDK tickets; remove "tickets".')
    return token.strip(), aes_key.strip()


class RegistryLoader:
    """Reads and parses the registry secret, caching it briefly per execution environment.

    When the current version cannot be read or parsed, the previous version (AWSPREVIOUS,
    which Secrets Manager keeps on every put) is used, and ``Registry.fallback`` says so.
    """

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
        self._cached: tuple[float, Registry] | None = None
        self._lock = threading.Lock()

    def load(self) -> Registry:
        with self._lock:
            now = self._clock()
            if self._cached is not None and now < self._cached[0]:
                return self._cached[1]
            registry = self._load()
            if not registry.fallback:
                self._cached = (now + self._cache_seconds, registry)
            return registry

    def _load(self) -> Registry:
        source = f"registry secret {self._secret_id!r}"
        try:
            return parse_registry(self._read("AWSCURRENT"), source=source)
        except RegistryError as current:
            problem = str(current)
        try:
            previous = parse_registry(self._read("AWSPREVIOUS"), source=f"{source} (AWSPREVIOUS)")
        except RegistryError:
            raise RegistryError(problem) from None
        logger.error(
            "%s Using the previous version (AWSPREVIOUS) of the registry until it is fixed",
            problem,
        )
        return Registry(previous.apps, previous.invalid, fallback=True)

    def _read(self, stage: str) -> str:
        failure: str | None = None
        try:
            if stage == "AWSCURRENT":  # the default stage
                response = self._client.get_secret_value(SecretId=self._secret_id)
            else:
                response = self._client.get_secret_value(
                    SecretId=self._secret_id, VersionStage=stage
                )
        except Exception as exc:
            failure = str(
                getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            )
        if failure is not None:
            raise RegistryError(
                f"Could not read registry secret {self._secret_id!r} ({stage}: {failure}). Check "
                "WECHAT_APPS_SECRET_ID, that the secret exists in this region and has a value "
                "(aws secretsmanager put-secret-value), and that the refresher may read it."
            )
        text = response.get("SecretString")
        if text is None:
            raise RegistryError(
                f"Registry secret {self._secret_id!r} has no SecretString: store the registry "
                "as JSON text, not binary."
            )
        return text
