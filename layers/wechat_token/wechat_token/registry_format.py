"""The app registry's format: the rules the refresher and the operators' CLI share.

The registry is the union of one or more Secrets Manager secrets ("shards"), each holding
one JSON object of entries keyed by the ``app_id`` consumers ask for (README, "The app
registry"). The refresher (``token_refresher.registry``) reads the shards; the operators'
``wechat-token apps`` (``wechat_token_ops.apps``) edits them. Both apply the rules below,
so that ``apps add`` refuses exactly what the refresher would refuse:

    parse_entry      one entry's fields (type, secret, corpid, tickets, component keys)
    parse_document   one shard: its entries, the refused ones (key -> reason), the disabled
    union            the shards together: a key in two shards, or two entries for one
                     WeChat app, keep the first in shard order (by name) and refuse the rest
    parse_secret_ids / check_prefix / discover
                     WECHAT_APPS_SECRET_ID (a comma-separated list) and
                     WECHAT_APPS_SECRET_PREFIX (ListSecrets, paginated)

It lives in the layer because the refresher and the CLI both have the layer and neither has
the other's code; consumers' functions never import it. Pure Python (``discover`` takes the
caller's client). Messages name the shard, the entry and the field, never a secret.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from .record import TICKET_TYPES

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

CLASSIC: Final = "classic"
STABLE: Final = "stable"
WECOM: Final = "wecom"
COMPONENT: Final = "component"
TYPES: Final = (CLASSIC, STABLE, WECOM, COMPONENT)
# Accepted for "type" and read as classic.
TYPE_ALIASES: Final = {"official_account": CLASSIC, "mini_program": CLASSIC}
KEY_PATTERN: Final = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
ENTRY_FIELDS: Final = frozenset(
    {"type", "secret", "appid", "corpid", "agentid", "tickets", "enabled", "token",
     "encoding_aes_key"}
)  # fmt: skip
INVALID_KEY: Final = "<invalid key>"
_AES_KEY = re.compile(r"^[A-Za-z0-9+/]{43}$")
# A secret's name (Secrets Manager: letters, digits and /_+=.@-); ids may also be ARNs.
_SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@\-]{1,512}$")
_SECRET_ID = re.compile(r"^[A-Za-z0-9/_+=.@:\-]{1,2048}$")


class RegistryFormatError(ValueError):
    """A registry document, entry or setting is refused. The message never holds a secret."""


def identity_of(kind: str, appid: str, secret: str) -> tuple[str, ...]:
    """What WeChat counts as one app: one token lives per identity.

    WeCom: one token per (corpid, app secret), so the secret's digest (never the secret).
    """
    if kind == WECOM:
        return (WECOM, appid, hashlib.sha256(secret.encode()).hexdigest())
    return (kind, appid)


@dataclass(frozen=True, slots=True)
class Entry:
    """One usable registry entry. ``repr`` never shows the secret or a component's keys."""

    app_id: str
    type: str
    appid: str  # WeChat's appid, or the WeCom corpid
    secret: str = field(repr=False)
    agentid: str | None = None
    tickets: tuple[str, ...] = ()
    message_token: str | None = field(default=None, repr=False)
    encoding_aes_key: str | None = field(default=None, repr=False)

    @property
    def identity(self) -> tuple[str, ...]:
        return identity_of(self.type, self.appid, self.secret)


@dataclass(frozen=True, slots=True)
class Document:
    """One shard's content, checked: usable entries, refused keys (key -> reason), the
    keys marked ``"enabled": false``, and the stored JSON object itself (``raw``, which
    holds the secrets: only the CLI's rewrite of the shard uses it)."""

    entries: dict[str, Entry]
    invalid: dict[str, str]
    disabled: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    # Stored as {"apps": {...}}: a rewrite keeps the wrapper.
    wrapped: bool = False

    @property
    def app_ids(self) -> tuple[str, ...]:
        """The valid and the refused keys, sorted (not the disabled ones)."""
        keys = set(self.entries) | set(self.invalid)
        keys.discard(INVALID_KEY)
        return tuple(sorted(keys))

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key the shard holds (valid, refused, disabled), sorted."""
        return tuple(sorted(self.raw, key=str))

    def __len__(self) -> int:
        return len(self.raw)


def safe_key(key: Any) -> str:
    """A key as it may be printed: itself if it is a valid app_id, else a placeholder."""
    text = str(key)
    return text if KEY_PATTERN.match(text) else INVALID_KEY


def load_json(text: str, *, source: str) -> tuple[dict[str, Any], bool]:
    """The JSON object of entries (unwrapped from ``{"apps": {...}}``) and whether it was
    wrapped. An empty object is returned as such: callers decide whether that is an error."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError, RecursionError) as exc:
        raise RegistryFormatError(
            f"{source} is not valid JSON ({exc.__class__.__name__} at line "
            f"{getattr(exc, 'lineno', '?')}): it must be an object mapping each app_id to "
            '{"secret": "..."}; see the README\'s registry format.'
        ) from None
    wrapped = isinstance(data, dict) and isinstance(data.get("apps"), dict) and len(data) == 1
    if wrapped:
        data = data["apps"]
    if not isinstance(data, dict):
        raise RegistryFormatError(
            f"{source} must be a JSON object mapping app_id to an entry, not "
            f"{type(data).__name__}; see the README's registry format."
        )
    return data, wrapped


def empty_message(source: str) -> str:
    return (
        f"{source} lists no apps: put one entry per app, e.g. "
        '{"wx1234567890abcdef": {"secret": "..."}} (aws secretsmanager put-secret-value).'
    )


def parse_document(text: str, *, source: str) -> Document:
    """One shard's JSON, checked; a bad entry is refused alone (``Document.invalid``).

    Two entries for one WeChat app would evict each other's tokens: every one after the
    first in key order is refused, naming both keys. Not JSON, or not an object of entries,
    is a ``RegistryFormatError``. An empty object is an empty document.
    """
    data, wrapped = load_json(text, source=source)
    entries: dict[str, Entry] = {}
    invalid: dict[str, str] = {}
    disabled: list[str] = []
    owners: dict[tuple[str, ...], str] = {}
    for app_id in sorted(data, key=str):
        try:
            entry = parse_entry(app_id, data[app_id], source=source)
        except RegistryFormatError as exc:
            invalid[safe_key(app_id)] = str(exc)
            continue
        if entry is None:
            disabled.append(app_id)
            continue
        first = owners.setdefault(entry.identity, app_id)
        if first != app_id:
            invalid[app_id] = (
                f"{source}: entries {first!r} and {app_id!r} are the same WeChat app "
                f"({entry.type} {entry.appid}); two refreshers of one app evict each other's "
                f"tokens, so {app_id!r} is refused: remove one of them."
            )
            continue
        entries[app_id] = entry
    return Document(entries, invalid, tuple(disabled), data, wrapped)


def parse_entry(app_id: str, entry: Any, *, source: str) -> Entry | None:
    """One entry, checked; ``None`` when it is disabled (``"enabled": false``)."""
    where = f"{source}, entry {app_id!r}"
    if not isinstance(app_id, str) or not KEY_PATTERN.match(app_id):
        raise RegistryFormatError(
            f"{source} has an entry key that is not a valid app_id (1-128 of A-Z a-z 0-9 _ . : -)."
        )
    if not isinstance(entry, dict):
        raise RegistryFormatError(f'{where}: must be an object like {{"secret": "..."}}.')
    unknown = sorted(str(name) for name in set(entry) - ENTRY_FIELDS)
    if unknown:
        raise RegistryFormatError(
            f"{where}: unknown field(s) {unknown}; known: {sorted(ENTRY_FIELDS)}."
        )
    if entry.get("enabled", True) is False:
        return None
    kind = entry.get("type", CLASSIC)
    kind = TYPE_ALIASES.get(kind, kind) if isinstance(kind, str) else kind
    if kind not in TYPES:
        raise RegistryFormatError(f"{where}: type {kind!r} is not one of {list(TYPES)}.")
    secret = entry.get("secret")
    if not isinstance(secret, str) or not secret.strip():
        raise RegistryFormatError(f'{where}: "secret" is missing or empty.')
    if kind == WECOM:
        appid = entry.get("corpid")
        if not isinstance(appid, str) or not appid.strip():
            raise RegistryFormatError(
                f'{where}: a WeCom entry needs "corpid" (and its app\'s secret).'
            )
    else:
        appid = entry.get("appid", app_id)
        if not isinstance(appid, str) or not appid.strip():
            raise RegistryFormatError(f'{where}: "appid" must be a non-empty string.')
    agentid = entry.get("agentid")
    if agentid is not None and not isinstance(agentid, (str, int)):
        raise RegistryFormatError(f'{where}: "agentid" must be a string or number.')
    tickets = entry.get("tickets", [])
    if not isinstance(tickets, list) or any(t not in TICKET_TYPES for t in tickets):
        raise RegistryFormatError(
            f'{where}: "tickets" must be a list drawn from {list(TICKET_TYPES)}.'
        )
    message_token, aes_key = _component_keys(entry, kind, where)
    return Entry(
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
            raise RegistryFormatError(
                f'{where}: "token" and "encoding_aes_key" are for components.'
            )
        return None, None
    if not isinstance(token, str) or not token.strip():
        raise RegistryFormatError(
            f'{where}: a component needs "token", the message token set on the platform.'
        )
    if not isinstance(aes_key, str) or not _AES_KEY.match(aes_key.strip()):
        raise RegistryFormatError(
            f'{where}: "encoding_aes_key" must be the 43 letters, digits, + and / of the '
            "platform's EncodingAESKey."
        )
    if entry.get("tickets"):
        raise RegistryFormatError(f'{where}: a component has no JS-SDK tickets; remove "tickets".')
    return token.strip(), aes_key.strip()


# --- many shards ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShardDocument:
    """A shard as read: its id (as configured or discovered), its name (the order), its
    content."""

    shard_id: str
    name: str
    document: Document


@dataclass(frozen=True, slots=True)
class Union:
    """The registry: every shard's usable entries, the refused keys (key -> reason), and
    the shard holding each valid or refused key (the first, when several do)."""

    entries: dict[str, Entry]
    invalid: dict[str, str]
    owners: dict[str, str]
    order: tuple[str, ...]  # the shards' ids, in the order that decides duplicates


def shard_order(shards: Sequence[ShardDocument]) -> list[ShardDocument]:
    """The stable order of the shards: by name, then id."""
    return sorted(shards, key=lambda shard: (shard.name, shard.shard_id))


def union(shards: Sequence[ShardDocument]) -> Union:
    """The shards together, sorted by name: a key held by an earlier shard (valid, refused
    or disabled) refuses the later ones; so does a later entry for a WeChat app an earlier
    shard already has. Each refusal names both keys and both shards, never a secret."""
    ordered = shard_order(shards)
    entries: dict[str, Entry] = {}
    invalid: dict[str, str] = {}
    owners: dict[str, str] = {}
    holders: dict[str, str] = {}  # every key, disabled ones too -> the first shard holding it
    identities: dict[tuple[str, ...], tuple[str, str]] = {}
    for shard in ordered:
        doc, sid = shard.document, shard.shard_id
        taken: set[str] = set()
        for key in doc.keys:
            if safe_key(key) == INVALID_KEY:
                continue
            first = holders.setdefault(key, sid)
            if first == sid:
                continue
            taken.add(key)
            message = (
                f"entry {key!r} is in registry secrets {first!r} and {sid!r}: the one in "
                f"{first!r} (the first by name) is used and the one in {sid!r} is refused: "
                f"remove one of them (wechat-token apps remove {key} --shard SECRET_ID)."
            )
            invalid[key] = f"{invalid[key]} {message}" if key in invalid else message
            owners.setdefault(key, first)
        for key, reason in doc.invalid.items():
            if key not in taken:
                invalid[key] = reason
                if key != INVALID_KEY:
                    owners[key] = sid
        for key, entry in doc.entries.items():
            if key in taken:
                continue
            owners[key] = sid
            first_key, first_shard = identities.setdefault(entry.identity, (key, sid))
            if first_key != key:
                invalid[key] = (
                    f"entries {first_key!r} (registry secret {first_shard!r}) and {key!r} "
                    f"(registry secret {sid!r}) are the same WeChat app ({entry.type} "
                    f"{entry.appid}); two refreshers of one app evict each other's tokens, so "
                    f"{key!r} is refused: remove one of them."
                )
                continue
            entries[key] = entry
    return Union(
        dict(sorted(entries.items())),
        dict(sorted(invalid.items())),
        owners,
        tuple(shard.shard_id for shard in ordered),
    )


def parse_secret_ids(text: str) -> tuple[str, ...]:
    """``WECHAT_APPS_SECRET_ID``: one secret id or ARN, or several separated by commas
    (duplicates dropped, order kept; the first is the one messages name)."""
    ids: list[str] = []
    for part in text.split(","):
        secret_id = part.strip()
        if not secret_id:
            continue
        if not _SECRET_ID.match(secret_id):
            raise RegistryFormatError(
                "WECHAT_APPS_SECRET_ID must be secret names or ARNs separated by commas "
                "(letters, digits and /_+=.@:- only)."
            )
        if secret_id not in ids:
            ids.append(secret_id)
    if not ids:
        raise RegistryFormatError(
            "WECHAT_APPS_SECRET_ID names no secret: give the registry secret's id or ARN "
            "(several separated by commas)."
        )
    return tuple(ids)


def check_prefix(text: str | None) -> str | None:
    """``WECHAT_APPS_SECRET_PREFIX``: every secret whose name starts with it is a shard."""
    prefix = (text or "").strip()
    if not prefix:
        return None
    if not _SECRET_NAME.match(prefix):
        raise RegistryFormatError(
            "WECHAT_APPS_SECRET_PREFIX must be the start of a secret name: letters, digits "
            "and /_+=.@- only (ListSecrets matches it, case-sensitive, against names)."
        )
    return prefix


@dataclass(frozen=True, slots=True)
class Listed:
    """A secret ListSecrets found: its name, ARN and AWSCURRENT version (None: unknown or
    no value yet)."""

    name: str
    arn: str
    current_version: str | None


def current_version(stages: Mapping[str, Sequence[str]] | None) -> str | None:
    """The version labelled AWSCURRENT in a ``VersionIdsToStages`` map."""
    for version, labels in (stages or {}).items():
        if "AWSCURRENT" in labels:
            return version
    return None


def discover(client: SecretsManagerClient, prefix: str, *, page_size: int = 100) -> list[Listed]:
    """Every secret whose name starts with ``prefix`` (ListSecrets with a ``name`` filter,
    every page), sorted by name; secrets scheduled for deletion are left out. Needs
    ``secretsmanager:ListSecrets`` (on "*": it has no resource-level permission)."""
    found: dict[str, Listed] = {}
    token: str | None = None
    while True:
        request: dict[str, Any] = {
            "Filters": [{"Key": "name", "Values": [prefix]}],
            "MaxResults": page_size,
        }
        if token:
            request["NextToken"] = token
        page = client.list_secrets(**request)
        for secret in page.get("SecretList", []):
            name, arn = secret.get("Name"), secret.get("ARN")
            if not name or not arn or not name.startswith(prefix) or secret.get("DeletedDate"):
                continue
            stages = secret.get("SecretVersionsToStages")
            found[name] = Listed(name, arn, current_version(stages))
        token = page.get("NextToken")
        if not token:
            break
    return [found[name] for name in sorted(found)]


def secret_digest(text: str) -> str:
    """A shard's content digest (sha256 of its SecretString): changes when the shard does."""
    return hashlib.sha256(text.encode()).hexdigest()
