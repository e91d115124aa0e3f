"""``apps``: list, add and remove app registry entries, across the registry's secrets.

The registry is the union of Secrets Manager secrets ("shards"): the ids in
``WECHAT_APPS_SECRET_ID`` (one, or several separated by commas; the first is the stack's
``AppRegistrySecret``) and every secret whose name starts with ``WECHAT_APPS_SECRET_PREFIX``.
The rules are the refresher's own (``wechat_token.registry_format``, in the layer both
have): an entry ``apps add`` accepts is one the refresher accepts, and a key or a WeChat app
already in any shard is refused.

Writes are PutSecretValue with optimistic concurrency: read the shard (its AWSCURRENT
VersionId), apply the change, check that AWSCURRENT is still that version just before the
put, put with a fresh ClientRequestToken (botocore's retries of the put are idempotent),
then check that the version the put replaced is the one read. A concurrent change found
before the put starts again from the new version; one found after it (the other writer's
put landed in between and ours replaced it) is repaired by applying the change to the other
writer's version too. After ``WRITE_ATTEMPTS`` the command fails and says so.

A shard is kept under ``SHARD_LIMIT_BYTES`` (Secrets Manager's limit is 65 536). When every
shard is full, ``apps add`` creates ``<prefix><NNN>`` with the first shard's KMS key and
resource policy (the policy first, the value after it, so that the new secret is never
readable by more principals than the first one).

Secrets come from standard input only, and nothing here prints, logs or raises one: AWS
errors are reduced to their code and message (``aws_error_detail``), JSON errors to their
kind.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TextIO

from wechat_token.redaction import aws_error_detail, redact
from wechat_token.registry_format import (
    CLASSIC,
    COMPONENT,
    INVALID_KEY,
    TYPE_ALIASES,
    TYPES,
    WECOM,
    Document,
    Entry,
    RegistryFormatError,
    ShardDocument,
    check_prefix,
    current_version,
    discover,
    parse_document,
    parse_entry,
    parse_secret_ids,
    safe_key,
    shard_order,
    union,
)

from .errors import AWSAccessError, ConcurrentEditError, OpsError, UsageError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

IDS_ENV: Final = "WECHAT_APPS_SECRET_ID"
PREFIX_ENV: Final = "WECHAT_APPS_SECRET_PREFIX"
# Headroom under Secrets Manager's 65 536 bytes: about 900 classic apps per shard.
SHARD_LIMIT_BYTES: Final = 60_000
WRITE_ATTEMPTS: Final = 3
NEW_SHARD_TRIES: Final = 5
# Flags that would put a secret on the command line (shell history, process lists).
SECRET_FLAGS: Final = frozenset(
    {"--secret", "--app-secret", "--appsecret", "--component-secret", "--token",
     "--message-token", "--encoding-aes-key", "--encoding_aes_key", "--aes-key"}
)  # fmt: skip
_MAX_STDIN = 65_536
_COMPONENT_FIELDS: Final = ("secret", "token", "encoding_aes_key")
_PROMPTS: Final = {
    "secret": "App secret: ",
    "token": "Message token: ",
    "encoding_aes_key": "EncodingAESKey: ",
}
SOURCE: Final = "wechat-token apps add"


# --- the shards -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardState:
    """A shard's AWSCURRENT version as read (``version`` None: the secret has no value
    yet). ``document.raw`` holds the secrets: it is written back, never shown."""

    shard_id: str
    name: str
    arn: str | None
    version: str | None
    document: Document = field(repr=False)
    size: int = 2  # bytes of the stored text ("{}" when there is none)

    def with_document(self, raw: dict[str, Any]) -> int:
        """The size the shard would have holding ``raw``."""
        return len(dump(raw, wrapped=self.document.wrapped).encode())


def dump(raw: Mapping[str, Any], *, wrapped: bool = False) -> str:
    """A shard's SecretString: compact JSON, keys sorted (``{"apps": ...}`` kept)."""
    data: Mapping[str, Any] = {"apps": dict(raw)} if wrapped else raw
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str((response.get("Error") or {}).get("Code") or type(exc).__name__)
    return type(exc).__name__


class Shards:
    """The registry's secrets: found, read, written and created through one client."""

    def __init__(
        self,
        client: SecretsManagerClient,
        secret_ids: Sequence[str],
        prefix: str | None,
        *,
        page_size: int = 100,
        request_token: Callable[[], str] = lambda: str(uuid.uuid4()),
        secrets: Sequence[str] = (),
    ) -> None:
        if not secret_ids:
            raise UsageError(f"{IDS_ENV} names no secret.")
        self.client = client
        self.ids = tuple(secret_ids)
        self.prefix = prefix
        self.page_size = page_size
        self.request_token = request_token
        # Values to mask in any AWS error text (belt and braces: AWS does not echo them).
        self.secrets = tuple(s for s in secrets if s)

    # -- errors -----------------------------------------------------------------------

    def _aws(self, exc: BaseException, what: str, advice: str) -> AWSAccessError:
        detail = redact(aws_error_detail(exc), *self.secrets)
        return AWSAccessError(f"Could not {what}: {detail}. {advice}")

    # -- reading ----------------------------------------------------------------------

    def targets(self) -> list[str]:
        """The configured ids, then every secret the prefix finds that they do not name."""
        found = list(self.ids)
        if self.prefix is None:
            return found
        try:
            listed = discover(self.client, self.prefix, page_size=self.page_size)
        except Exception as exc:
            raise self._aws(
                exc,
                f"list the registry secrets named {self.prefix!r}...",
                f"Check {PREFIX_ENV}, the region, and secretsmanager:ListSecrets in your policy.",
            ) from None
        for secret in listed:
            if secret.name not in found and secret.arn not in found:
                found.append(secret.name)
        return found

    def read(self, shard_id: str, *, version_id: str | None = None) -> ShardState:
        """A shard's AWSCURRENT version (or ``version_id``), parsed by the refresher's rules."""
        request: dict[str, Any] = {"SecretId": shard_id}
        if version_id is not None:
            request["VersionId"] = version_id
        try:
            response = self.client.get_secret_value(**request)
        except Exception as exc:
            if _code(exc) == "ResourceNotFoundException" and version_id is None:
                return self._valueless(shard_id, exc)
            raise self._aws(
                exc,
                f"read registry secret {shard_id!r}",
                f"Check {IDS_ENV} / {PREFIX_ENV}, the region, and that you may read it "
                "(GetSecretValue, its resource policy, its KMS key).",
            ) from None
        text = response.get("SecretString")
        if text is None:
            raise UsageError(
                f"Registry secret {shard_id!r} has no SecretString (binary): the registry is "
                "JSON text; fix it with aws secretsmanager put-secret-value."
            )
        source = f"registry secret {shard_id!r}"
        try:
            document = parse_document(text, source=source)
        except RegistryFormatError as exc:
            raise UsageError(
                f"{exc} Its current version is not a registry (the refresher uses its "
                "previous version meanwhile): fix it with aws secretsmanager put-secret-value "
                "before editing it here."
            ) from None
        return ShardState(
            shard_id=shard_id,
            name=str(response.get("Name") or shard_id),
            arn=response.get("ARN"),
            version=response.get("VersionId"),
            document=document,
            size=len(text.encode()),
        )

    def _valueless(self, shard_id: str, cause: BaseException) -> ShardState:
        """A secret without a value (a shard being created) reads as empty; no secret at
        all is an error."""
        try:
            described = self.client.describe_secret(SecretId=shard_id)
        except Exception:
            raise self._aws(
                cause,
                f"read registry secret {shard_id!r}",
                f"Check {IDS_ENV} / {PREFIX_ENV} and the region: the secret does not exist.",
            ) from None
        if current_version(described.get("VersionIdsToStages")) is not None:
            raise self._aws(
                cause,
                f"read registry secret {shard_id!r}",
                "It has a value you may not read: check GetSecretValue and its KMS key.",
            )
        return ShardState(
            shard_id=shard_id,
            name=str(described.get("Name") or shard_id),
            arn=described.get("ARN"),
            version=None,
            document=Document({}, {}),
        )

    def read_all(self) -> tuple[list[ShardState], dict[str, str]]:
        """Every shard that can be read, in the refresher's order (by name), and why the
        others cannot (id -> message)."""
        states: list[ShardState] = []
        unreadable: dict[str, str] = {}
        arns: set[str] = set()
        for shard_id in self.targets():
            try:
                state = self.read(shard_id)
            except OpsError as exc:
                unreadable[shard_id] = str(exc)
                continue
            if state.arn is not None and state.arn in arns:
                continue  # one secret, configured and found by the prefix
            arns.add(state.arn or "")
            states.append(state)
        order = {
            doc.shard_id: index
            for index, doc in enumerate(shard_order([_shard_document(s) for s in states]))
        }
        return sorted(states, key=lambda s: order[s.shard_id]), unreadable

    def _current(self, shard_id: str) -> tuple[str | None, str | None]:
        """The versions labelled AWSCURRENT and AWSPREVIOUS now."""
        try:
            stages = self.client.describe_secret(SecretId=shard_id).get("VersionIdsToStages")
        except Exception as exc:
            raise self._aws(
                exc,
                f"describe registry secret {shard_id!r}",
                "Check secretsmanager:DescribeSecret in your policy.",
            ) from None
        previous = next(
            (v for v, labels in (stages or {}).items() if "AWSPREVIOUS" in labels), None
        )
        return current_version(stages), previous

    # -- writing ----------------------------------------------------------------------

    def write(
        self, shard_id: str, change: Callable[[ShardState], dict[str, Any] | None]
    ) -> tuple[ShardState, ShardState]:
        """Apply ``change`` (the shard's new entries, or None: nothing to do) with optimistic
        concurrency; the shard as read last and as written."""
        repair: tuple[str, str] | None = None  # (the other writer's version, ours)
        for _attempt in range(WRITE_ATTEMPTS):
            if repair is None:
                state = self.read(shard_id)
                expected = state.version
            else:
                state = self.read(shard_id, version_id=repair[0])
                expected = repair[1]
            raw = change(state)
            if raw is None:
                return state, state
            text = dump(raw, wrapped=state.document.wrapped)
            size = len(text.encode())
            if size >= SHARD_LIMIT_BYTES:
                raise UsageError(
                    f"Registry secret {shard_id!r} would hold {size} bytes (limit "
                    f"{SHARD_LIMIT_BYTES}): choose another --shard, or omit it."
                )
            if self._current(shard_id)[0] != expected:
                repair = None  # changed since read: start again from its new version
                continue
            token = self.request_token()
            try:
                self.client.put_secret_value(
                    SecretId=shard_id, SecretString=text, ClientRequestToken=token
                )
            except Exception as exc:
                raise self._aws(
                    exc,
                    f"write registry secret {shard_id!r}",
                    "Check secretsmanager:PutSecretValue (and kms:GenerateDataKey on its key); "
                    "wechat-token apps list shows whether the change landed.",
                ) from None
            current, previous = self._current(shard_id)
            if current == token and previous == expected:
                written = ShardState(
                    shard_id, state.name, state.arn, token, parse_document(text, source=shard_id),
                    size,
                )  # fmt: skip
                return state, written
            if current != token:
                repair = None  # someone wrote after us: apply the change to theirs
                continue
            if previous is None:
                break
            repair = (previous, token)  # their put landed between our check and ours
        raise ConcurrentEditError(
            f"Registry secret {shard_id!r} kept changing while this command wrote it "
            f"({WRITE_ATTEMPTS} attempts): someone else is editing it. Check with wechat-token "
            "apps list, then run the command again."
        )

    # -- a new shard ------------------------------------------------------------------

    def next_name(self, names: Sequence[str]) -> str:
        if self.prefix is None:
            raise UsageError(
                f"Every registry secret is full ({SHARD_LIMIT_BYTES} bytes each): set "
                f"{PREFIX_ENV} (and the refresher's, with its IAM permissions; README, \"Many "
                'secrets (shards)") so that apps add can create <prefix>001, ... .'
            )
        pattern = re.compile(re.escape(self.prefix) + r"(\d+)$")
        numbers = [int(m.group(1)) for m in map(pattern.match, names) if m]
        return f"{self.prefix}{max(numbers, default=0) + 1:03d}"

    def create(self, names: Sequence[str]) -> tuple[ShardState, bool]:
        """A new, empty shard ``<prefix><NNN>`` with the first shard's KMS key and resource
        policy (no value yet: ``write`` puts it); whether there was a policy to copy."""
        first = self.ids[0]
        try:
            described = self.client.describe_secret(SecretId=first)
            policy = self.client.get_resource_policy(SecretId=first).get("ResourcePolicy")
        except Exception as exc:
            raise self._aws(
                exc,
                f"read the KMS key and resource policy of {first!r} (copied to a new shard)",
                "Check secretsmanager:DescribeSecret and GetResourcePolicy on it.",
            ) from None
        request: dict[str, Any] = {
            "Description": (
                "wechat-token app registry shard (JSON, one entry per app; see the README, "
                f'"Many secrets (shards)"). Created by wechat-token apps add; policy of {first}.'
            )
        }
        if described.get("KmsKeyId"):
            request["KmsKeyId"] = described["KmsKeyId"]
        name = self.next_name(names)
        created = None
        for _try in range(NEW_SHARD_TRIES):
            try:
                created = self.client.create_secret(Name=name, **request)
                break
            except Exception as exc:
                if _code(exc) not in ("ResourceExistsException", "InvalidRequestException"):
                    raise self._aws(
                        exc,
                        f"create registry secret {name!r}",
                        "Check secretsmanager:CreateSecret (and the KMS key's policy).",
                    ) from None
                name = self.next_name([*names, name])  # taken, or scheduled for deletion
        if created is None:
            raise AWSAccessError(f"Could not find a free name for a new shard after {name!r}.")
        arn = str(created.get("ARN") or name)
        copied = bool(policy) and self.copy_policy(
            arn, policy=policy, first_arn=described.get("ARN")
        )
        return ShardState(name, name, arn, None, Document({}, {})), copied

    def copy_policy(
        self, shard_id: str, *, policy: str | None = None, first_arn: str | None = None
    ) -> bool:
        """Give ``shard_id`` the first shard's resource policy (the first shard's ARN in it
        becomes the new one's). False when the first shard has none."""
        first = self.ids[0]
        try:
            if policy is None:
                policy = self.client.get_resource_policy(SecretId=first).get("ResourcePolicy")
                first_arn = self.client.describe_secret(SecretId=first).get("ARN")
            if not policy:
                return False
            document = _replace(json.loads(policy), first_arn, shard_id)
            self.client.put_resource_policy(
                SecretId=shard_id, ResourcePolicy=json.dumps(document), BlockPublicPolicy=True
            )
        except Exception as exc:
            raise self._aws(
                exc,
                f"copy the resource policy of {first!r} to {shard_id!r}",
                "The new shard has no value yet and the app was not added: check "
                "secretsmanager:GetResourcePolicy / PutResourcePolicy, then run the command "
                "again (it fills the empty shard).",
            ) from None
        return True


def _replace(value: Any, old: str | None, new: str) -> Any:
    if old is None:
        return value
    if isinstance(value, str):
        return new if value == old else value
    if isinstance(value, list):
        return [_replace(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _replace(v, old, new) for k, v in value.items()}
    return value


def _shard_document(state: ShardState) -> ShardDocument:
    return ShardDocument(state.shard_id, state.name, state.document)


# --- list -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AppRow:
    """One key of one shard, as ``apps list`` shows it: never a secret."""

    app_id: str
    shard: str
    status: str  # ok, disabled, refused
    type: str = "-"
    appid: str = "-"
    agentid: str | None = None
    tickets: tuple[str, ...] = ()
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "app_id": self.app_id,
            "type": self.type,
            "appid": self.appid,
            "agentid": self.agentid,
            "tickets": list(self.tickets),
            "shard": self.shard,
            "status": self.status,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Listing:
    shards: list[ShardState]
    rows: list[AppRow]
    unreadable: dict[str, str]

    @property
    def healthy(self) -> bool:
        return not self.unreadable and all(row.status != "refused" for row in self.rows)

    def as_dict(self) -> dict[str, Any]:
        return {
            "shards": [
                {
                    "secret_id": s.shard_id,
                    "name": s.name,
                    "version": s.version,
                    "apps": len(s.document),
                    "bytes": s.size,
                    "limit_bytes": SHARD_LIMIT_BYTES,
                }
                for s in self.shards
            ],
            "unreadable": dict(self.unreadable),
            "apps": [row.as_dict() for row in self.rows],
            "ok": self.healthy,
        }


def _raw_type(raw: Any) -> str:
    kind = raw.get("type", CLASSIC) if isinstance(raw, dict) else None
    if isinstance(kind, str):
        kind = TYPE_ALIASES.get(kind, kind)
        if kind in TYPES:
            return kind
    return "?"


def listing(shards: Shards) -> Listing:
    """Every key of every readable shard, with the refresher's verdict on it."""
    states, unreadable = shards.read_all()
    merged = union([_shard_document(s) for s in states])
    rows: list[AppRow] = []
    seen: set[str] = set()
    for state in states:
        doc, sid = state.document, state.shard_id
        for key in doc.keys:
            shown = safe_key(key)
            first = shown not in seen
            seen.add(shown)
            entry = doc.entries.get(key)
            if entry is not None and merged.entries.get(key) is entry:
                rows.append(_row(entry, sid))
            elif key in doc.disabled and first:
                rows.append(AppRow(key, sid, "disabled", _raw_type(doc.raw[key])))
            else:
                reason = merged.invalid.get(shown) or doc.invalid.get(shown) or "refused"
                kind = _raw_type(doc.raw.get(key))
                rows.append(AppRow(shown, sid, "refused", kind, reason=reason))
    rows.sort(key=lambda row: (row.app_id, row.shard))
    return Listing(states, rows, unreadable)


def _row(entry: Entry, shard: str) -> AppRow:
    return AppRow(entry.app_id, shard, "ok", entry.type, entry.appid, entry.agentid, entry.tickets)


# --- add ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """What ``add`` or ``remove`` did: never a secret."""

    action: str
    app_id: str
    shards: tuple[str, ...]
    versions: tuple[str | None, ...]
    type: str | None = None
    created: str | None = None
    policy_copied: bool = False
    sizes: tuple[int, ...] = ()
    apps: tuple[int, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "app_id": self.app_id,
            "type": self.type,
            "shards": [
                {"secret_id": s, "version": v, "bytes": b, "apps": n}
                for s, v, b, n in zip(
                    self.shards, self.versions, self.sizes, self.apps, strict=True
                )
            ],
            "created_shard": self.created,
            "policy_copied": self.policy_copied,
        }


def read_credentials(kind: str, stdin: TextIO, prompt: Callable[[str], str]) -> dict[str, str]:
    """The app secret (a component: also its message token and EncodingAESKey) from
    standard input, never from an argument: a terminal is prompted without echo; a pipe
    gives one line (a component: three lines, secret, token, key; or a JSON object with
    "secret", "token" and "encoding_aes_key")."""
    fields = _COMPONENT_FIELDS if kind == COMPONENT else ("secret",)
    isatty = getattr(stdin, "isatty", None)
    if isatty is not None and isatty():
        return {name: prompt(_PROMPTS[name]).strip() for name in fields}
    text = stdin.read(_MAX_STDIN + 1)
    if len(text) > _MAX_STDIN:
        raise UsageError("Standard input is too long for an app secret.")
    if kind == COMPONENT and text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            raise UsageError(
                "Standard input starts with { but is not a JSON object (contents not shown)."
            ) from None
        if not isinstance(data, dict) or set(data) != set(fields):
            raise UsageError(
                'The JSON on standard input must have exactly "secret", "token" and '
                '"encoding_aes_key" (strings).'
            )
        if not all(isinstance(data[name], str) for name in fields):
            raise UsageError('"secret", "token" and "encoding_aes_key" must be strings.')
        return {name: data[name].strip() for name in fields}
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != len(fields):
        wanted = (
            "three lines: the component appsecret, the message token, the EncodingAESKey "
            "(or a JSON object)"
            if kind == COMPONENT
            else "one line: the app secret"
        )
        raise UsageError(
            f"Standard input must hold {wanted}; it holds {len(lines)} non-empty line(s) "
            "(contents not shown). Example: printf '%s\\n' \"$APP_SECRET\" | wechat-token "
            "apps add APP_ID"
        )
    return dict(zip(fields, lines, strict=True))


def new_entry(
    app_id: str,
    *,
    kind: str,
    credentials: Mapping[str, str],
    appid: str | None = None,
    corpid: str | None = None,
    agentid: str | None = None,
    tickets: Sequence[str] = (),
) -> tuple[dict[str, Any], Entry]:
    """The stored entry and its check by the refresher's rules (a ``UsageError`` naming
    the field, never the secret)."""
    if kind != WECOM and (corpid is not None or agentid is not None):
        raise UsageError("--corpid and --agentid are for --type wecom.")
    if kind == WECOM and appid is not None:
        raise UsageError("A WeCom entry is identified by --corpid, not --appid.")
    raw: dict[str, Any] = {}
    if kind != CLASSIC:
        raw["type"] = kind
    raw["secret"] = credentials.get("secret", "")
    for name, value in (("appid", appid), ("corpid", corpid), ("agentid", agentid)):
        if value is not None:
            raw[name] = value.strip()
    if tickets:
        raw["tickets"] = list(tickets)
    if kind == COMPONENT:
        raw["token"] = credentials.get("token", "")
        raw["encoding_aes_key"] = credentials.get("encoding_aes_key", "")
    try:
        entry = parse_entry(app_id, raw, source=SOURCE)
    except RegistryFormatError as exc:
        raise UsageError(str(exc)) from None
    if entry is None:  # pragma: no cover - "enabled" is never set here
        raise UsageError("The new entry is disabled.")
    return raw, entry


def _refuse_duplicates(app_id: str, entry: Entry, states: Sequence[ShardState]) -> None:
    for state in states:
        if app_id in state.document.raw:
            raise UsageError(
                f"{app_id!r} is already in registry secret {state.shard_id!r}: remove it first "
                "(wechat-token apps remove) to replace it."
            )
    for state in states:
        for key, other in state.document.entries.items():
            if other.identity == entry.identity:
                same = "corpid and app secret" if entry.type == WECOM else f"{entry.type} appid"
                raise UsageError(
                    f"{app_id!r} would be the same WeChat app as {key!r} in registry secret "
                    f"{state.shard_id!r} (same {same}): two refreshers of one app evict each "
                    "other's tokens."
                )


def add(
    shards: Shards,
    app_id: str,
    raw_entry: dict[str, Any],
    entry: Entry,
    *,
    shard: str | None = None,
) -> Change:
    """Add the entry to ``shard``, or to the first shard with room, or to a new shard."""
    states, unreadable = shards.read_all()
    if unreadable:
        named = ", ".join(repr(s) for s in unreadable)
        raise UsageError(
            f"Cannot check {app_id!r} against every shard: {named} could not be read "
            f"({next(iter(unreadable.values()))}). Fix that first (wechat-token apps list)."
        )
    _refuse_duplicates(app_id, entry, states)
    target = _target(states, shard, app_id, raw_entry)
    created: str | None = None
    policy_copied = False
    if target is None:
        target, policy_copied = shards.create([s.name for s in states])
        created = target.shard_id
    elif target.version is None and target.shard_id not in shards.ids[:1]:
        policy_copied = shards.copy_policy(target.arn or target.shard_id)

    def change(state: ShardState) -> dict[str, Any] | None:
        if app_id in state.document.raw:
            if state.document.raw[app_id] == raw_entry:
                return None  # already there: this command's own earlier put
            raise UsageError(f"{app_id!r} was just added to {state.shard_id!r} by someone else.")
        return {**state.document.raw, app_id: raw_entry}

    _read, written = shards.write(target.shard_id, change)
    return Change(
        "added",
        app_id,
        (written.shard_id,),
        (written.version,),
        type=entry.type,
        created=created,
        policy_copied=policy_copied,
        sizes=(written.size,),
        apps=(len(written.document),),
    )


def _target(
    states: Sequence[ShardState], shard: str | None, app_id: str, raw_entry: dict[str, Any]
) -> ShardState | None:
    def fits(state: ShardState) -> bool:
        raw = {**state.document.raw, app_id: raw_entry}
        return state.with_document(raw) < SHARD_LIMIT_BYTES

    if shard is not None:
        named = [s for s in states if shard in (s.shard_id, s.name, s.arn)]
        if not named:
            known = ", ".join(repr(s.shard_id) for s in states)
            raise UsageError(f"--shard {shard!r} is not one of the registry's secrets: {known}.")
        if not fits(named[0]):
            raise UsageError(
                f"Registry secret {named[0].shard_id!r} is full ({named[0].size} of "
                f"{SHARD_LIMIT_BYTES} bytes): omit --shard to use one with room (or a new one)."
            )
        return named[0]
    return next((s for s in states if fits(s)), None)


# --- remove ---------------------------------------------------------------------------------


def remove(
    shards: Shards, app_id: str, *, shard: str | None = None
) -> tuple[Change, dict[str, str]]:
    """Remove ``app_id`` from every shard holding it (or from ``shard`` only: one of two
    copies); the change, and the shards that could not be read (it may be in one of them)."""
    states, unreadable = shards.read_all()
    holding = [s for s in states if app_id in s.document.raw]
    if shard is not None:
        holding = [s for s in holding if shard in (s.shard_id, s.name, s.arn)]
        if not holding:
            raise UsageError(f"{app_id!r} is not in registry secret {shard!r}.")
    if not holding:
        where = (
            f" (not readable, so not searched: {', '.join(repr(s) for s in unreadable)})"
            if unreadable
            else ""
        )
        raise UsageError(f"{app_id!r} is in no registry secret{where}.")
    left = sum(len(s.document.raw) for s in states) - len(holding)
    if left == 0 and not unreadable:
        raise UsageError(
            f"{app_id!r} is the registry's last entry: the refresher refuses an empty "
            "registry (and would keep using the previous version, which lists it). Add the "
            "next app first."
        )

    def change(state: ShardState) -> dict[str, Any] | None:
        if app_id not in state.document.raw:
            return None  # removed meanwhile
        return {k: v for k, v in state.document.raw.items() if k != app_id}

    written = [shards.write(state.shard_id, change)[1] for state in holding]
    return (
        Change(
            "removed",
            app_id,
            tuple(s.shard_id for s in written),
            tuple(s.version for s in written),
            sizes=tuple(s.size for s in written),
            apps=tuple(len(s.document) for s in written),
        ),
        unreadable,
    )


# --- settings -------------------------------------------------------------------------------


def shard_settings(
    given_ids: str | None, given_prefix: str | None, env: Mapping[str, str]
) -> tuple[tuple[str, ...], str | None]:
    """The registry's ids and prefix: the flags', else the environment's (as the refresher
    reads them)."""
    text = given_ids if given_ids is not None else env.get(IDS_ENV, "")
    if not text.strip():
        raise UsageError(
            f"Set {IDS_ENV} (the stack output AppRegistrySecretArn; several ids separated by "
            "commas), or pass --registry."
        )
    try:
        ids = parse_secret_ids(text)
        prefix = check_prefix(given_prefix if given_prefix is not None else env.get(PREFIX_ENV))
    except RegistryFormatError as exc:
        raise UsageError(str(exc)) from None
    return ids, prefix


def refused_flag(argv: Sequence[str]) -> str | None:
    """A flag that would carry a secret on the command line, if ``argv`` has one."""
    for arg in argv:
        name = arg.split("=", 1)[0]
        if name in SECRET_FLAGS:
            return name
    return None


__all__ = [
    "INVALID_KEY",
    "SHARD_LIMIT_BYTES",
    "AppRow",
    "Change",
    "Listing",
    "ShardState",
    "Shards",
    "add",
    "listing",
    "new_entry",
    "read_credentials",
    "refused_flag",
    "remove",
    "shard_settings",
]
