"""The app registry: which credentials to keep fresh, read from Secrets Manager secrets.

Each secret ("shard") holds one JSON object, one entry per credential, keyed by the
``app_id`` consumers ask for:

    {
      "wx1234567890abcdef": {"secret": "..."},
      "wxabcdef1234567890": {"type": "stable", "secret": "..."},
      "ww0123456789:1000002": {"type": "wecom", "corpid": "ww0123456789", "secret": "..."},
      "wxcomponent000001": {"type": "component", "secret": "...", "token": "...",
                            "encoding_aes_key": "<43 characters>"}
    }

The registry is the union of the shards: the ids in ``WECHAT_APPS_SECRET_ID`` (one, or
several separated by commas) and every secret whose name starts with
``WECHAT_APPS_SECRET_PREFIX`` (README, "Many secrets (shards)"). The format's rules live in
the layer (``wechat_token.registry_format``), which the operators' ``wechat-token apps``
applies too.

A ``component`` entry is a third-party platform: its component_appsecret, and the message
token and EncodingAESKey its push callback verifies and decrypts with. Its authorizers are
not listed here: they come and go with the merchants' authorizations (DynamoDB).

A bad entry fails that entry alone (``Registry.invalid``, by key, never the secret); two
entries for one WeChat app (same type and appid, or same corpid and secret) would evict each
other's tokens, so every entry after the first (in shard order, then key order) is refused,
naming both keys; so is a key held by two shards. When a shard's current version cannot be
read or parsed, its previous one (AWSPREVIOUS) is used and the run says so
(``Registry.fallback``); a shard that cannot be read at all is left out and named
(``Registry.unreadable``), and only when no shard can be read is the registry an error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, ItemsView, Iterator, Sequence, ValuesView
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wechat_token.registry_format import (
    CLASSIC,
    COMPONENT,
    STABLE,
    TYPES,
    WECOM,
    Document,
    Entry,
    Listed,
    RegistryFormatError,
    ShardDocument,
    discover,
    empty_message,
    identity_of,
    parse_document,
    secret_digest,
    union,
)

from .errors import RegistryError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

logger = logging.getLogger("wechat_token.refresher")

__all__ = [
    "AUTHORIZER",
    "CLASSIC",
    "COMPONENT",
    "MAX_CACHED_SHARDS",
    "STABLE",
    "TYPES",
    "WECOM",
    "AppConfig",
    "Registry",
    "RegistryLoader",
    "Shard",
    "parse_registry",
]

# Not a registry type: an authorizer of a component, known from DynamoDB.
AUTHORIZER = "authorizer"
# The parsed shards one loader keeps (about 900 classic apps each under the CLI's 60 000
# bytes: 230 000 apps). Shards beyond it are read and parsed again on every load.
MAX_CACHED_SHARDS = 256


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
    def of(cls, entry: Entry) -> AppConfig:
        """The credential of a checked registry entry."""
        return cls(
            app_id=entry.app_id,
            type=entry.type,
            appid=entry.appid,
            secret=entry.secret,
            agentid=entry.agentid,
            tickets=entry.tickets,
            message_token=entry.message_token,
            encoding_aes_key=entry.encoding_aes_key,
        )

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
        return identity_of(self.type, self.appid, self.secret)


@dataclass(frozen=True, slots=True)
class Shard:
    """One registry secret as loaded: its id (as configured, or its name when the prefix
    found it), a digest that changes when its content does (sha256 of the SecretString
    used: AWSPREVIOUS's under a fallback), and its valid and refused keys, sorted."""

    secret_id: str
    digest: str
    app_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Registry:
    """The usable entries, the refused ones (key -> reason), and where they came from:
    ``shards`` (id -> Shard) read, ``unreadable`` (id -> what to fix, never secret text)
    left out, ``fallback`` when any shard is its previous version (AWSPREVIOUS)."""

    apps: dict[str, AppConfig]
    invalid: dict[str, str] = field(default_factory=dict)
    fallback: bool = False
    shards: dict[str, Shard] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)
    # Each valid or refused key -> the shard holding it (the first, when several do).
    owners: dict[str, str] = field(default_factory=dict, repr=False)

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

    def shard_of(self, app_id: str) -> str | None:
        """The id of the shard holding ``app_id`` (valid or refused), else None."""
        return self.owners.get(app_id)


def parse_registry(text: str, *, source: str = "the registry secret") -> Registry:
    """Validate one registry document; errors name the entry and the field, never a secret.

    A document that is not a JSON object of entries, or lists none, is a ``RegistryError``;
    a bad entry is reported in ``Registry.invalid`` and the others stay usable.
    """
    document = _document(text, source)
    if not document.raw:
        raise RegistryError(empty_message(source))
    return _registry([ShardDocument(source, source, document)])


def _document(text: str, source: str) -> Document:
    try:
        return parse_document(text, source=source)
    except RegistryFormatError as exc:
        raise RegistryError(str(exc)) from None


def _registry(
    shards: Sequence[ShardDocument],
    *,
    digests: dict[str, str] | None = None,
    fallback: bool = False,
    unreadable: dict[str, str] | None = None,
) -> Registry:
    merged = union(shards)
    digests = digests or {}
    return Registry(
        {key: AppConfig.of(entry) for key, entry in merged.entries.items()},
        merged.invalid,
        fallback=fallback,
        shards={
            shard.shard_id: Shard(
                shard.shard_id, digests.get(shard.shard_id, ""), shard.document.app_ids
            )
            for shard in shards
        },
        unreadable=dict(unreadable or {}),
        owners=merged.owners,
    )


# --- reading the shards ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    """A shard to read: its id, and its AWSCURRENT version when ListSecrets told it."""

    shard_id: str
    listed_version: str | None = None


@dataclass(frozen=True, slots=True)
class _Read:
    """A shard as read."""

    shard_id: str
    name: str
    arn: str | None
    version: str | None
    digest: str
    document: Document
    fallback: bool


class RegistryLoader:
    """Reads the registry's shards and merges them, caching each shard per execution
    environment.

    Each shard is trusted for ``cache_seconds``; after that, a shard whose AWSCURRENT version
    ListSecrets reports unchanged is not read again, and one read again with unchanged
    content is not parsed again. At most ``max_cached_shards`` shards are kept. A shard
    whose current version cannot be read or parsed falls back to its previous version
    (AWSPREVIOUS, which Secrets Manager keeps on every put; ``Registry.fallback``), and is
    read again on the next load, as is one that cannot be read at all
    (``Registry.unreadable``). Only when no shard can be read does ``load`` raise
    ``RegistryError``. One lock: the refresher's threads share a loader.
    """

    def __init__(
        self,
        client: SecretsManagerClient,
        secret_ids: str | Sequence[str],
        *,
        prefix: str | None = None,
        cache_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_cached_shards: int = MAX_CACHED_SHARDS,
        page_size: int = 100,
    ) -> None:
        ids = (secret_ids,) if isinstance(secret_ids, str) else tuple(secret_ids)
        if not ids and not prefix:
            raise ValueError("the registry needs a secret id or a prefix")
        self._client = client
        self._ids = ids
        self._prefix = prefix or None
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._max_cached = max(0, max_cached_shards)
        self._page_size = page_size
        self._lock = threading.Lock()
        self._shards: dict[str, tuple[float, _Read]] = {}
        self._listing: tuple[float, list[Listed]] | None = None
        self._registry: tuple[float, tuple[Any, ...], Registry] | None = None

    def load(self) -> Registry:
        with self._lock:
            now = self._clock()
            if self._registry is not None and now < self._registry[0]:
                return self._registry[2]
            return self._load(now)

    # -- one load ---------------------------------------------------------------------

    def _load(self, now: float) -> Registry:
        targets, unreadable = self._targets(now)
        single = len(targets) == 1 and not unreadable
        reads: list[_Read] = []
        arns: set[str] = set()
        for target in targets:
            read = self._shard(target, now, single=single)
            if isinstance(read, str):
                unreadable[target.shard_id] = read
            elif read.arn is None or read.arn not in arns:  # one secret named twice: once
                reads.append(read)
                arns.add(read.arn or "")
        self._prune({target.shard_id for target in targets})
        if not reads:
            raise RegistryError(self._nothing_read(unreadable))
        if len(reads) > 1 and not any(read.document.raw for read in reads):
            raise RegistryError(
                f"None of the {len(reads)} registry secrets lists an app: add entries with "
                'wechat-token apps add (README, "Many secrets (shards)").'
            )
        fallback = any(read.fallback for read in reads)
        signature = (
            tuple((read.shard_id, read.digest, read.fallback) for read in reads),
            tuple(sorted(unreadable.items())),
        )
        previous = self._registry
        if previous is not None and previous[1] == signature:
            registry = previous[2]
        else:
            registry = _registry(
                [ShardDocument(read.shard_id, read.name, read.document) for read in reads],
                digests={read.shard_id: read.digest for read in reads},
                fallback=fallback,
                unreadable=unreadable,
            )
        # A clean registry is trusted as a whole until the first shard expires; with a
        # fallback or an unreadable shard, every load reads those again (the rest cached).
        clean = not fallback and not unreadable
        until = min((self._shards[r.shard_id][0] for r in reads if r.shard_id in self._shards),
                    default=now)  # fmt: skip
        listing_until = self._listing[0] if self._listing is not None else until
        self._registry = (min(until, listing_until) if clean else now, signature, registry)
        return registry

    def _targets(self, now: float) -> tuple[list[_Target], dict[str, str]]:
        """The configured ids, then every secret the prefix finds that they do not name."""
        unreadable: dict[str, str] = {}
        listed: list[Listed] = []
        if self._prefix is not None:
            if self._listing is not None and now < self._listing[0]:
                listed = self._listing[1]
            else:
                try:
                    listed = discover(self._client, self._prefix, page_size=self._page_size)
                    self._listing = (now + self._cache_seconds, listed)
                except Exception as exc:
                    problem = (
                        f"Could not list the registry secrets named {self._prefix!r}... "
                        f"({_error_code(exc)}). Check WECHAT_APPS_SECRET_PREFIX and that the "
                        "refresher may call secretsmanager:ListSecrets."
                    )
                    if self._listing is not None:  # the last listing, until this works again
                        logger.error("%s Using the last list of secrets", problem)
                        listed = self._listing[1]
                    else:
                        logger.error("%s", problem)
                        unreadable[f"{self._prefix}*"] = problem
        targets: dict[str, _Target] = {sid: _Target(sid) for sid in self._ids}
        for secret in listed:
            named = next((sid for sid in self._ids if sid in (secret.name, secret.arn)), None)
            if named is not None:
                targets[named] = _Target(named, secret.current_version)
            else:
                targets[secret.name] = _Target(secret.name, secret.current_version)
        return list(targets.values()), unreadable

    def _shard(self, target: _Target, now: float, *, single: bool) -> _Read | str:
        """The shard, from the cache when it may be; else read. A string: why it cannot be
        read (never its content)."""
        cached = self._shards.get(target.shard_id)
        if cached is not None:
            until, read = cached
            if now < until:
                return read
            if target.listed_version is not None and target.listed_version == read.version:
                self._keep(read, now)  # ListSecrets says AWSCURRENT is the same version
                return read
        source = f"registry secret {target.shard_id!r}"
        previous_read = cached[1] if cached is not None else None
        try:
            read = self._read(target.shard_id, "AWSCURRENT", source, previous_read, single)
        except RegistryError as current:
            problem = str(current)
        else:
            self._keep(read, now)
            return read
        try:
            read = self._read(
                target.shard_id, "AWSPREVIOUS", f"{source} (AWSPREVIOUS)", None, single
            )
        except RegistryError:
            logger.error("%s", problem)
            return problem
        logger.error(
            "%s Using the previous version (AWSPREVIOUS) of %s until it is fixed", problem, source
        )
        return read

    def _read(
        self, shard_id: str, stage: str, source: str, cached: _Read | None, single: bool
    ) -> _Read:
        response = self._get(shard_id, stage)
        text = response.get("SecretString")
        if text is None:
            raise RegistryError(
                f"Registry secret {shard_id!r} has no SecretString: store the registry "
                "as JSON text, not binary."
            )
        digest = secret_digest(text)
        if cached is not None and cached.digest == digest and not cached.fallback:
            document = cached.document  # unchanged content: the parse is reused
        else:
            document = _document(text, source)
        if single and not document.raw:
            # The whole registry lists nothing: a mistake, not a choice (AWSPREVIOUS next).
            raise RegistryError(empty_message(source))
        return _Read(
            shard_id=shard_id,
            name=str(response.get("Name") or shard_id),
            arn=response.get("ARN"),
            version=response.get("VersionId"),
            digest=digest,
            document=document,
            fallback=stage != "AWSCURRENT",
        )

    def _get(self, shard_id: str, stage: str) -> dict[str, Any]:
        failure: str | None = None
        try:
            if stage == "AWSCURRENT":  # the default stage
                response = self._client.get_secret_value(SecretId=shard_id)
            else:
                response = self._client.get_secret_value(SecretId=shard_id, VersionStage=stage)
        except Exception as exc:
            failure = _error_code(exc)
        if failure is not None:
            raise RegistryError(
                f"Could not read registry secret {shard_id!r} ({stage}: {failure}). Check "
                "WECHAT_APPS_SECRET_ID (and WECHAT_APPS_SECRET_PREFIX), that the secret exists "
                "in this region and has a value (aws secretsmanager put-secret-value), and "
                "that the refresher may read it (GetSecretValue, and its KMS key if any)."
            )
        return dict(response)

    # -- the cache --------------------------------------------------------------------

    def _keep(self, read: _Read, now: float) -> None:
        """Cache a current shard, within the bound (never a fallback: it is read again)."""
        if read.fallback:
            return
        if read.shard_id in self._shards or len(self._shards) < self._max_cached:
            self._shards[read.shard_id] = (now + self._cache_seconds, read)

    def _prune(self, live: set[str]) -> None:
        """Forget shards that are gone; warn once per load when the bound is reached."""
        for shard_id in set(self._shards) - live:
            del self._shards[shard_id]
        if len(live) > self._max_cached:
            logger.warning(
                "The registry has %d secrets: %d are cached, the others are read on every "
                "load. Merge shards (fewer, fuller secrets) to save Secrets Manager calls",
                len(live),
                self._max_cached,
            )

    @staticmethod
    def _nothing_read(unreadable: dict[str, str]) -> str:
        if len(unreadable) == 1:
            return next(iter(unreadable.values()))
        problems = list(unreadable.items())
        shown = "; ".join(f"{sid!r}: {problem}" for sid, problem in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        return f"No registry secret could be read ({len(problems)}): {shown}{more}"


def _error_code(exc: BaseException) -> str:
    """An AWS error's code (or the exception's class): never its message or a payload."""
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__))
