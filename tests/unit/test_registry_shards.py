"""The registry as the union of several secrets ("shards"): ``RegistryLoader`` on moto.

10 000 apps over 12 shards, duplicates across shards, an unreadable shard, AWSPREVIOUS per
shard, the per-shard cache (its bound, the reuse of unchanged shards, counted in
GetSecretValue calls), discovery by prefix over several ListSecrets pages, and shard
digests that change only with their shard.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from token_refresher import registry as registry_module
from token_refresher.errors import RegistryError, SettingsError
from token_refresher.registry import (
    MAX_CACHED_SHARDS,
    AppConfig,
    Registry,
    RegistryLoader,
    Shard,
    parse_registry,
)
from token_refresher.settings import Settings
from wechat_token.registry_format import (
    Document,
    ShardDocument,
    parse_document,
    parse_secret_ids,
    union,
)

FIRST = "wechat-token/apps"
PREFIX = "wechat-token/apps-"
SECRET_MARK = "S3CR3T"  # in every secret below: never in a message


def secret_of(app_id: str) -> str:
    """32 characters, as WeChat's AppSecrets."""
    return SECRET_MARK + hashlib.sha256(app_id.encode()).hexdigest()[:26]


def entries(*app_ids: str, **extra: Any) -> dict[str, Any]:
    return {app_id: {"secret": secret_of(app_id), **extra} for app_id in app_ids}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Counting:
    """A Secrets Manager client that counts calls per operation, and can deny some reads."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: Counter[str] = Counter()
        self.reads: Counter[str] = Counter()
        self.denied: set[str] = set()
        self.list_pages: list[dict[str, Any]] = []
        self.fail_listing = False

    def get_secret_value(self, **kwargs: Any) -> Any:
        self.calls["get_secret_value"] += 1
        self.reads[kwargs["SecretId"]] += 1
        if kwargs["SecretId"] in self.denied:
            raise ClientError(
                {"Error": {"Code": "AccessDeniedException", "Message": "denied"}},
                "GetSecretValue",
            )
        return self.client.get_secret_value(**kwargs)

    def list_secrets(self, **kwargs: Any) -> Any:
        self.calls["list_secrets"] += 1
        if self.fail_listing:
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "ListSecrets"
            )
        page = self.client.list_secrets(**kwargs)
        self.list_pages.append(kwargs)
        return page


@pytest.fixture
def secrets() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def put(client: Any, name: str, value: dict[str, Any] | str) -> None:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    try:
        client.create_secret(Name=name, SecretString=text)
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=name, SecretString=text)


def loader(client: Any, ids: Any = FIRST, **kwargs: Any) -> RegistryLoader:
    kwargs.setdefault("prefix", PREFIX)
    kwargs.setdefault("clock", Clock())
    return RegistryLoader(client, ids, **kwargs)


def no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET_MARK not in text


# --- the union ------------------------------------------------------------------------------


def test_ten_thousand_apps_over_twelve_shards_load_as_one_registry(secrets: Any) -> None:
    put(secrets, FIRST, {})  # the stack's placeholder: empty is fine among several shards
    app_ids = [f"wx{n:016d}" for n in range(10_000)]
    for shard in range(12):
        chunk = app_ids[shard::12]
        put(secrets, f"{PREFIX}{shard + 1:03d}", entries(*chunk))
        text = json.dumps(entries(*chunk), separators=(",", ":"))
        assert len(text.encode()) < 60_000, "each shard fits the CLI's limit"
    counting = Counting(secrets)

    registry = loader(counting).load()

    assert len(registry) == 10_000
    assert sorted(registry) == app_ids
    assert registry.invalid == {}
    assert registry.unreadable == {}
    assert not registry.fallback
    assert set(registry.shards) == {FIRST} | {f"{PREFIX}{n:03d}" for n in range(1, 13)}
    assert registry.shards[FIRST].app_ids == ()
    assert registry.shard_of(app_ids[13]) == f"{PREFIX}002"
    assert registry.shard_of("wxnope") is None
    assert registry[app_ids[0]].secret == secret_of(app_ids[0])
    assert counting.calls["get_secret_value"] == 13


def test_a_key_in_two_shards_keeps_the_first_by_name_and_refuses_the_other(
    secrets: Any,
) -> None:
    # Created in reverse order: the order is the names', not the creation's.
    put(secrets, f"{PREFIX}002", entries("wxshared", "wxb"))
    put(secrets, f"{PREFIX}001", entries("wxshared", "wxa"))
    put(secrets, FIRST, entries("wxfirst"))

    registry = loader(secrets).load()

    assert sorted(registry) == ["wxa", "wxb", "wxfirst", "wxshared"]
    assert registry["wxshared"].secret == secret_of("wxshared")
    assert registry.shard_of("wxshared") == f"{PREFIX}001"
    message = registry.invalid["wxshared"]
    assert f"{PREFIX}001" in message
    assert f"{PREFIX}002" in message
    assert "'wxshared'" in message
    no_secret(message, repr(registry))


def test_two_entries_for_one_wechat_app_in_two_shards_refuse_the_later(secrets: Any) -> None:
    put(secrets, FIRST, entries("wxreal"))
    put(secrets, f"{PREFIX}001", {"alias": {"appid": "wxreal", "secret": secret_of("x")}})
    put(
        secrets,
        f"{PREFIX}002",
        {
            "ww1:1": {"type": "wecom", "corpid": "ww1", "secret": secret_of("ww")},
            "ww1:2": {"type": "wecom", "corpid": "ww1", "secret": secret_of("other")},
        },
    )
    put(
        secrets,
        f"{PREFIX}003",
        {"ww1:copy": {"type": "wecom", "corpid": "ww1", "secret": secret_of("ww")}},
    )

    registry = loader(secrets).load()

    # "wechat-token/apps" sorts before "wechat-token/apps-001": the first shard wins.
    assert "wxreal" in registry
    assert "alias" not in registry
    message = registry.invalid["alias"]
    assert "'wxreal'" in message
    assert "'alias'" in message
    assert repr(FIRST) in message
    assert repr(f"{PREFIX}001") in message
    assert "ww1:1" in registry, "two agents of one corp are two apps"
    assert "ww1:2" in registry
    assert "ww1:copy" not in registry
    assert repr(f"{PREFIX}002") in registry.invalid["ww1:copy"]
    no_secret(*registry.invalid.values())
    assert registry.shards[f"{PREFIX}001"].app_ids == ("alias",)


def test_the_union_is_the_same_whatever_order_the_shards_come_in() -> None:
    a = parse_document(json.dumps(entries("wx1", "wx2")), source="a")
    b = parse_document(json.dumps(entries("wx2", "wx3")), source="b")
    one = union([ShardDocument("a", "a", a), ShardDocument("b", "b", b)])
    two = union([ShardDocument("b", "b", b), ShardDocument("a", "a", a)])
    assert one == two
    assert one.owners["wx2"] == "a"
    assert list(one.entries) == ["wx1", "wx2", "wx3"]


def test_a_disabled_key_still_owns_its_name_across_shards() -> None:
    a = parse_document(json.dumps({"wx1": {"secret": "x", "enabled": False}}), source="a")
    b = parse_document(json.dumps(entries("wx1")), source="b")
    merged = union([ShardDocument("a", "a", a), ShardDocument("b", "b", b)])
    assert "wx1" not in merged.entries
    assert "'a'" in merged.invalid["wx1"]
    assert "'b'" in merged.invalid["wx1"]


def test_one_document_keeps_todays_rules() -> None:
    registry = parse_registry(
        json.dumps({**entries("wx1"), "alias": {"appid": "wx1", "secret": "y"}})
    )
    # Key order: "alias" comes first, so "wx1" is the one refused.
    assert "'alias' and 'wx1' are the same WeChat app" in registry.invalid["wx1"]
    with pytest.raises(RegistryError, match="lists no apps"):
        parse_registry("{}")
    with pytest.raises(RegistryError, match="not valid JSON"):
        parse_registry("{")
    config = registry["alias"]
    assert isinstance(config, AppConfig)
    assert SECRET_MARK not in repr(config)


# --- unreadable shards and AWSPREVIOUS ------------------------------------------------------


def test_an_unreadable_shard_is_reported_and_the_others_load(secrets: Any) -> None:
    put(secrets, FIRST, entries("wxfirst"))
    put(secrets, f"{PREFIX}001", entries("wxa"))
    put(secrets, f"{PREFIX}002", entries("wxdenied"))
    counting = Counting(secrets)
    counting.denied.add(f"{PREFIX}002")
    # A configured id that does not exist (deleted, a typo).
    registry = loader(counting, [FIRST, "wechat-token/gone"]).load()

    assert sorted(registry) == ["wxa", "wxfirst"]
    assert set(registry.unreadable) == {f"{PREFIX}002", "wechat-token/gone"}
    assert "AccessDeniedException" in registry.unreadable[f"{PREFIX}002"]
    assert "ResourceNotFoundException" in registry.unreadable["wechat-token/gone"]
    assert "GetSecretValue" in registry.unreadable[f"{PREFIX}002"], "says what to fix"
    assert not registry.fallback
    assert f"{PREFIX}002" not in registry.shards
    no_secret(*registry.unreadable.values())


def test_a_deleted_shard_leaves_the_registry(secrets: Any) -> None:
    put(secrets, FIRST, entries("wxfirst"))
    put(secrets, f"{PREFIX}001", entries("wxa"))
    clock = Clock()
    shards = loader(secrets, clock=clock, cache_seconds=60)
    assert "wxa" in shards.load()
    secrets.delete_secret(SecretId=f"{PREFIX}001")  # scheduled for deletion: not listed
    clock.now += 61
    registry = shards.load()
    assert sorted(registry) == ["wxfirst"]
    assert set(registry.shards) == {FIRST}


def test_only_when_every_shard_fails_is_the_registry_an_error(secrets: Any) -> None:
    put(secrets, f"{PREFIX}001", entries("wxa"))
    counting = Counting(secrets)
    counting.denied.add(f"{PREFIX}001")
    with pytest.raises(RegistryError) as caught:
        loader(counting, [FIRST]).load()
    message = str(caught.value)
    assert "No registry secret could be read (2)" in message
    assert FIRST in message
    assert f"{PREFIX}001" in message
    no_secret(message)


def test_a_single_missing_secret_says_what_to_check(secrets: Any) -> None:
    with pytest.raises(RegistryError, match=r"ResourceNotFoundException.*WECHAT_APPS_SECRET_ID"):
        RegistryLoader(secrets, "no/such/secret").load()


def test_a_broken_shard_falls_back_to_its_previous_version_alone(secrets: Any) -> None:
    put(secrets, FIRST, entries("wxfirst"))
    put(secrets, f"{PREFIX}001", entries("wxa", "wxb"))
    put(secrets, f"{PREFIX}001", '{"wxa": {"secret": "' + secret_of("wxa") + '"')  # cut off
    counting = Counting(secrets)
    clock = Clock()
    shards = loader(counting, clock=clock)

    registry = shards.load()

    assert registry.fallback
    assert sorted(registry) == ["wxa", "wxb", "wxfirst"], "the previous version's apps"
    assert registry.unreadable == {}
    assert registry.shards[f"{PREFIX}001"].app_ids == ("wxa", "wxb")
    # The broken shard is read again on every load (to recover at once); the others are not.
    before = Counter(counting.reads)
    clock.now += 1
    assert shards.load().fallback
    assert counting.reads[f"{PREFIX}001"] - before[f"{PREFIX}001"] == 2  # current, previous
    assert counting.reads[FIRST] == before[FIRST]
    # Fixed: the current version is used again.
    put(secrets, f"{PREFIX}001", entries("wxa"))
    clock.now += 1
    registry = shards.load()
    assert not registry.fallback
    assert sorted(registry) == ["wxa", "wxfirst"]


def test_a_single_empty_registry_still_falls_back(secrets: Any) -> None:
    put(secrets, FIRST, entries("wxfirst"))
    put(secrets, FIRST, {})
    registry = RegistryLoader(secrets, FIRST).load()
    assert registry.fallback
    assert list(registry) == ["wxfirst"]


def test_shards_that_all_list_nothing_are_an_error(secrets: Any) -> None:
    put(secrets, FIRST, {})
    put(secrets, f"{PREFIX}001", {})
    with pytest.raises(RegistryError, match="lists an app"):
        loader(secrets).load()


# --- the cache ------------------------------------------------------------------------------


def test_a_fresh_registry_costs_no_call(secrets: Any) -> None:
    put(secrets, FIRST, entries("wxfirst"))
    put(secrets, f"{PREFIX}001", entries("wxa"))
    counting = Counting(secrets)
    clock = Clock()
    shards = loader(counting, clock=clock, cache_seconds=60)
    first = shards.load()
    calls = Counter(counting.calls)
    clock.now += 59
    assert shards.load() is first
    assert counting.calls == calls


def test_unchanged_shards_are_neither_read_nor_parsed_again(
    secrets: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    put(secrets, FIRST, entries("wxfirst"))
    for n in range(1, 4):
        put(secrets, f"{PREFIX}{n:03d}", entries(f"wx{n}"))
    counting = Counting(secrets)
    clock = Clock()
    shards = loader(counting, clock=clock, cache_seconds=60)
    first = shards.load()
    assert counting.calls["get_secret_value"] == 4

    parsed: list[str] = []
    real = parse_document

    def spy(text: str, *, source: str) -> Document:
        parsed.append(source)
        return real(text, source=source)

    monkeypatch.setattr(registry_module, "parse_document", spy)  # what the loader calls
    clock.now += 61
    again = shards.load()
    # ListSecrets reported every prefixed shard's AWSCURRENT unchanged: not read again. The
    # configured one (not under the prefix) is read, found unchanged, and not parsed.
    assert counting.reads[FIRST] == 2
    assert all(counting.reads[f"{PREFIX}{n:03d}"] == 1 for n in range(1, 4))
    assert parsed == []
    assert again is first, "nothing changed: the same registry"

    put(secrets, f"{PREFIX}002", entries("wx2", "wx2b"))
    clock.now += 61
    changed = shards.load()
    assert counting.reads[f"{PREFIX}002"] == 2
    assert counting.reads[f"{PREFIX}001"] == 1
    assert parsed == [f"registry secret '{PREFIX}002'"]
    assert "wx2b" in changed


def test_the_cache_keeps_at_most_its_bound_of_shards(secrets: Any) -> None:
    assert MAX_CACHED_SHARDS == 256
    put(secrets, FIRST, entries("wxfirst"))
    for n in range(1, 5):
        put(secrets, f"{PREFIX}{n:03d}", entries(f"wx{n}"))
    counting = Counting(secrets)
    clock = Clock()
    shards = loader(counting, clock=clock, cache_seconds=60, max_cached_shards=2)
    assert len(shards.load()) == 5
    assert len(shards._shards) == 2
    before = Counter(counting.reads)
    clock.now += 61
    assert len(shards.load()) == 5
    assert len(shards._shards) == 2
    reread = {s: counting.reads[s] - before[s] for s in counting.reads}
    # Cached: FIRST (configured, not under the prefix: read again, its parse reused) and
    # -001 (ListSecrets says unchanged: not read). Not cached: -002 to -004, read again.
    assert reread == {FIRST: 1, f"{PREFIX}001": 0, **{f"{PREFIX}{n:03d}": 1 for n in (2, 3, 4)}}


def test_a_loader_shared_by_threads_reads_each_shard_once(secrets: Any) -> None:
    put(secrets, FIRST, entries("wxfirst"))
    for n in range(1, 4):
        put(secrets, f"{PREFIX}{n:03d}", entries(f"wx{n}"))
    counting = Counting(secrets)
    shards = loader(counting)
    results: list[Registry] = []
    barrier = threading.Barrier(8)

    def load() -> None:
        barrier.wait()
        results.append(shards.load())

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert all(result is results[0] for result in results)
    assert counting.calls["get_secret_value"] == 4


# --- discovery ------------------------------------------------------------------------------


def test_the_prefix_finds_every_shard_over_several_pages(secrets: Any) -> None:
    put(secrets, FIRST, entries("wxfirst"))
    for n in range(1, 6):
        put(secrets, f"{PREFIX}{n:03d}", entries(f"wx{n}"))
    put(secrets, "wechat-token/other", entries("wxother"))  # another prefix
    put(secrets, "WECHAT-TOKEN/APPS-009", entries("wxupper"))  # names are case-sensitive
    counting = Counting(secrets)

    registry = loader(counting, page_size=2).load()

    assert sorted(registry) == ["wx1", "wx2", "wx3", "wx4", "wx5", "wxfirst"]
    assert counting.calls["list_secrets"] == 3
    assert counting.list_pages[0]["Filters"] == [{"Key": "name", "Values": [PREFIX]}]
    assert "NextToken" in counting.list_pages[1]


def test_a_configured_id_the_prefix_also_finds_is_one_shard(secrets: Any) -> None:
    put(secrets, f"{PREFIX}001", entries("wxa"))
    arn = secrets.describe_secret(SecretId=f"{PREFIX}001")["ARN"]
    for configured in (f"{PREFIX}001", arn):
        registry = loader(secrets, configured).load()
        assert list(registry) == ["wxa"]
        assert list(registry.shards) == [configured]
        assert registry.invalid == {}


def test_a_failed_listing_keeps_the_configured_shards_and_says_so(secrets: Any) -> None:
    put(secrets, FIRST, entries("wxfirst"))
    put(secrets, f"{PREFIX}001", entries("wxa"))
    counting = Counting(secrets)
    counting.fail_listing = True
    registry = loader(counting).load()
    assert list(registry) == ["wxfirst"]
    assert "ListSecrets" in registry.unreadable[f"{PREFIX}*"]
    # A listing that worked once is kept while ListSecrets fails.
    counting.fail_listing = False
    clock = Clock()
    shards = loader(counting, clock=clock)
    assert sorted(shards.load()) == ["wxa", "wxfirst"]
    counting.fail_listing = True
    clock.now += 61
    registry = shards.load()
    assert sorted(registry) == ["wxa", "wxfirst"]
    assert registry.unreadable == {}


# --- digests --------------------------------------------------------------------------------


def test_a_shard_digest_changes_only_when_its_shard_does(secrets: Any) -> None:
    put(secrets, FIRST, entries("wxfirst"))
    put(secrets, f"{PREFIX}001", entries("wxa"))
    put(secrets, f"{PREFIX}002", entries("wxb"))
    clock = Clock()
    shards = loader(secrets, clock=clock)
    before = {sid: shard.digest for sid, shard in shards.load().shards.items()}
    assert len(set(before.values())) == 3
    assert all(len(digest) == 64 for digest in before.values())

    put(secrets, f"{PREFIX}002", entries("wxb", "wxc"))
    put(secrets, f"{PREFIX}001", entries("wxa"))  # a new version, the same content
    clock.now += 61
    registry = shards.load()
    after = {sid: shard.digest for sid, shard in registry.shards.items()}
    assert after[FIRST] == before[FIRST]
    assert after[f"{PREFIX}001"] == before[f"{PREFIX}001"]
    assert after[f"{PREFIX}002"] != before[f"{PREFIX}002"]
    assert registry.shards[f"{PREFIX}002"] == Shard(
        f"{PREFIX}002", after[f"{PREFIX}002"], ("wxb", "wxc")
    )
    no_secret(repr(registry.shards))


# --- settings -------------------------------------------------------------------------------


ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:wechat-token/more-AbC123"


def test_settings_read_several_ids_and_a_prefix() -> None:
    env = {
        "TOKEN_TABLE_NAME": "t",
        "WECHAT_APPS_SECRET_ID": f" {FIRST} , {ARN},{FIRST},",
        "WECHAT_APPS_SECRET_PREFIX": f" {PREFIX} ",
    }
    settings = Settings.from_env(env)
    assert settings.registry_secret_id == FIRST
    assert settings.registry_secret_ids == (FIRST, ARN)
    assert settings.registry_secret_prefix == PREFIX
    one = Settings.from_env({"TOKEN_TABLE_NAME": "t", "WECHAT_APPS_SECRET_ID": FIRST})
    assert one.registry_secret_ids == (FIRST,)
    assert one.registry_secret_prefix is None


@pytest.mark.parametrize(
    ("ids", "prefix", "words"),
    [
        (" , ", "", "WECHAT_APPS_SECRET_ID"),
        ("a b", "", "WECHAT_APPS_SECRET_ID must be"),
        (FIRST, "!wechat", "WECHAT_APPS_SECRET_PREFIX must be"),
        (FIRST, "has space", "WECHAT_APPS_SECRET_PREFIX must be"),
    ],
)
def test_bad_registry_settings_are_refused(ids: str, prefix: str, words: str) -> None:
    env = {
        "TOKEN_TABLE_NAME": "t",
        "WECHAT_APPS_SECRET_ID": ids,
        "WECHAT_APPS_SECRET_PREFIX": prefix,
    }
    with pytest.raises(SettingsError, match=words):
        Settings.from_env(env)


def test_settings_built_in_code_default_to_one_id() -> None:
    settings = Settings(table_name="t", registry_secret_id="s")
    assert settings.registry_secret_ids == ("s",)
    with pytest.raises(SettingsError, match="first of registry_secret_ids"):
        Settings(table_name="t", registry_secret_id="s", registry_secret_ids=("x", "s"))
    assert parse_secret_ids("a,b,a") == ("a", "b")
