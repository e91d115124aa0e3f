"""Consumers back off: a failed or refused passive request, or an expired record that a
request did not cure, is not repeated for that credential for PASSIVE_BACKOFF_SECONDS; and a
slow passive request never holds up other credentials' cache misses."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest
from wechat_token import (
    CredentialKey,
    CredentialRecord,
    InMemoryRecordSource,
    PassiveRefreshError,
    TokenExpiredError,
    TokenReader,
    WeChatAPIError,
    WeChatClient,
)
from wechat_token.passive import PASSIVE_BACKOFF_SECONDS, REPLACED_OUTCOMES
from wechat_token.record import fingerprint

from .conftest import ManualClock

APP = "wxbackoff00000001"
OTHER = "wxbackoff00000002"
BASE = "https://api.weixin.qq.test"
BUSINESS = "/cgi-bin/get_api_domain_ip"


def record(
    clock: ManualClock, value: str, *, app_id: str = APP, expires_in: float = 6900
) -> CredentialRecord:
    return CredentialRecord(
        app_id, "access_token", value, expires_at=clock.now + expires_in, fetched_at=clock.now
    )


@dataclass
class FakePassive:
    """Answers ``outcome`` (or raises ``error``); on a replacement, stores ``replacement``."""

    source: InMemoryRecordSource
    clock: ManualClock
    outcome: str = "failed"
    error: Exception | None = None
    replacement: str | None = None
    calls: list[tuple[str, str, str, int | None]] = field(default_factory=list)
    during: Callable[[], None] | None = None

    def __call__(self, app_id: str, kind: str, stale: str, errcode: int | None) -> str:
        self.calls.append((app_id, kind, stale, errcode))
        if self.during is not None:
            self.during()
        if self.error is not None:
            raise self.error
        if self.replacement is not None:
            self.source.put(record(self.clock, self.replacement, app_id=app_id))
        return self.outcome


@pytest.fixture
def source() -> InMemoryRecordSource:
    return InMemoryRecordSource()


def expired_reader(
    source: InMemoryRecordSource, clock: ManualClock, passive: FakePassive
) -> TokenReader:
    source.put(record(clock, "TOKEN-OLD", expires_in=-5))
    return TokenReader(source=source, clock=clock, passive_refresh=passive)


def test_the_back_off_is_thirty_seconds() -> None:
    assert PASSIVE_BACKOFF_SECONDS == 30.0
    assert frozenset({"refreshed", "already_replaced", "lease_held"}) == REPLACED_OUTCOMES


def test_an_expired_record_is_reported_once_then_not_for_the_back_off(
    source: InMemoryRecordSource, clock: ManualClock
) -> None:
    passive = FakePassive(source, clock, error=PassiveRefreshError("invoke failed"))
    reader = expired_reader(source, clock, passive)
    with pytest.raises(TokenExpiredError, match="The passive refresh failed: invoke failed"):
        reader.get(APP)
    assert passive.calls == [(APP, "access_token", fingerprint("TOKEN-OLD"), 42001)]
    for _ in range(5):
        clock.advance(5)
        with pytest.raises(TokenExpiredError, match="No passive refresh asked before"):
            reader.get(APP)
    assert len(passive.calls) == 1, "backing off for 30 s"
    clock.advance(5.1)
    with pytest.raises(TokenExpiredError):
        reader.get(APP)
    assert len(passive.calls) == 2, "asked again once the back-off ran out"


@pytest.mark.parametrize(
    "outcome", ["failed", "rate_limited", "token_accepted", "not_due", "unknown"]
)
def test_a_refused_report_starts_the_back_off(
    source: InMemoryRecordSource, clock: ManualClock, outcome: str
) -> None:
    passive = FakePassive(source, clock, outcome=outcome)
    reader = expired_reader(source, clock, passive)
    with pytest.raises(TokenExpiredError, match=f"answered '{outcome}'"):
        reader.get(APP)
    reads = source.reads
    clock.advance(PASSIVE_BACKOFF_SECONDS - 1)
    with pytest.raises(TokenExpiredError):
        reader.get(APP)
    assert len(passive.calls) == 1
    assert source.reads == reads + 1, "no consistent re-read after a refusal"


@pytest.mark.parametrize("outcome", sorted(REPLACED_OUTCOMES))
def test_a_replacement_is_read_back_consistently(
    source: InMemoryRecordSource, clock: ManualClock, outcome: str
) -> None:
    passive = FakePassive(source, clock, outcome=outcome, replacement="TOKEN-NEW")
    reader = expired_reader(source, clock, passive)
    assert reader.get(APP) == "TOKEN-NEW"
    assert len(passive.calls) == 1
    assert reader.backoff.refusal(CredentialKey(APP), clock.now) is None


def test_a_replacement_that_does_not_show_up_starts_the_back_off(
    source: InMemoryRecordSource, clock: ManualClock
) -> None:
    passive = FakePassive(source, clock, outcome="refreshed")  # but nothing is stored
    reader = expired_reader(source, clock, passive)
    with pytest.raises(TokenExpiredError, match="still holds no valid value"):
        reader.get(APP)
    clock.advance(10)
    with pytest.raises(TokenExpiredError):
        reader.get(APP)
    assert len(passive.calls) == 1


def test_back_off_is_per_credential(source: InMemoryRecordSource, clock: ManualClock) -> None:
    passive = FakePassive(source, clock, outcome="failed")
    reader = expired_reader(source, clock, passive)
    source.put(record(clock, "TOKEN-OTHER-OLD", app_id=OTHER, expires_in=-5))
    with pytest.raises(TokenExpiredError):
        reader.get(APP)
    with pytest.raises(TokenExpiredError):
        reader.get(OTHER)
    assert [c[0] for c in passive.calls] == [APP, OTHER]


def test_a_slow_passive_request_does_not_block_other_credentials(
    source: InMemoryRecordSource, clock: ManualClock
) -> None:
    release, started = threading.Event(), threading.Event()

    def hang() -> None:
        started.set()
        release.wait(10)

    passive = FakePassive(source, clock, outcome="failed", during=hang)
    reader = expired_reader(source, clock, passive)
    source.put(record(clock, "TOKEN-OTHER", app_id=OTHER))
    errors: list[BaseException] = []

    def expired_miss() -> None:
        try:
            reader.get(APP)
        except TokenExpiredError as exc:
            errors.append(exc)

    slow = threading.Thread(target=expired_miss)
    slow.start()
    try:
        assert started.wait(5)
        began = time.monotonic()
        assert reader.get(OTHER) == "TOKEN-OTHER"
        assert time.monotonic() - began < 1, "another credential's miss waited"
    finally:
        release.set()
        slow.join(5)
    assert len(errors) == 1


# -- WeChatClient ---------------------------------------------------------------------------


@dataclass
class FakeWeChat:
    """Rejects every token in ``rejected`` with 40001; accepts the rest."""

    rejected: set[str]
    seen: list[str] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        token = request.url.params["access_token"]
        self.seen.append(token)
        if token in self.rejected:
            return httpx.Response(200, json={"errcode": 40001, "errmsg": "invalid credential"})
        return httpx.Response(200, json={"errcode": 0, "ip_list": ["1.2.3.4"]})


def rejecting_client(
    source: InMemoryRecordSource, clock: ManualClock, passive: FakePassive, wechat: FakeWeChat
) -> WeChatClient:
    source.put(record(clock, "TOKEN-OLD"))
    reader = TokenReader(source=source, clock=clock, passive_refresh=None)
    return WeChatClient(
        APP,
        base_url=BASE,
        reader=reader,
        passive_refresh=passive,
        http=httpx.Client(transport=httpx.MockTransport(wechat)),
        sleep=lambda _: None,
        wait_seconds=0,
    )


def test_the_client_reports_once_and_retries_once_with_the_replacement(
    source: InMemoryRecordSource, clock: ManualClock
) -> None:
    passive = FakePassive(source, clock, outcome="refreshed", replacement="TOKEN-NEW")
    wechat = FakeWeChat({"TOKEN-OLD"})
    client = rejecting_client(source, clock, passive, wechat)
    assert client.get(BUSINESS)["ip_list"]
    assert wechat.seen == ["TOKEN-OLD", "TOKEN-NEW"]
    assert passive.calls == [(APP, "access_token", fingerprint("TOKEN-OLD"), 40001)]


def test_the_client_backs_off_after_a_failed_report(
    source: InMemoryRecordSource, clock: ManualClock
) -> None:
    passive = FakePassive(source, clock, error=PassiveRefreshError("FunctionError"))
    wechat = FakeWeChat({"TOKEN-OLD"})
    client = rejecting_client(source, clock, passive, wechat)
    with pytest.raises(PassiveRefreshError, match="FunctionError"):
        client.get(BUSINESS)
    clock.advance(PASSIVE_BACKOFF_SECONDS - 1)
    with pytest.raises(PassiveRefreshError, match="Not asking for a passive refresh") as caught:
        client.get(BUSINESS)
    assert "the last passive refresh request failed" in str(caught.value)
    assert len(passive.calls) == 1
    clock.advance(1)
    with pytest.raises(PassiveRefreshError, match="FunctionError"):
        client.get(BUSINESS)
    assert len(passive.calls) == 2
    assert wechat.seen == ["TOKEN-OLD"] * 3, "no retry with a token WeChat just rejected"


@pytest.mark.parametrize("outcome", ["failed", "rate_limited", "not_due"])
def test_the_client_backs_off_after_a_refusal(
    source: InMemoryRecordSource, clock: ManualClock, outcome: str
) -> None:
    passive = FakePassive(source, clock, outcome=outcome)
    client = rejecting_client(source, clock, passive, FakeWeChat({"TOKEN-OLD"}))
    with pytest.raises(PassiveRefreshError, match=f"outcome: {outcome}") as caught:
        client.get(BUSINESS)
    assert caught.value.outcome == outcome
    with pytest.raises(PassiveRefreshError, match="Not asking") as again:
        client.get(BUSINESS)
    assert again.value.outcome == outcome
    assert len(passive.calls) == 1


def test_an_accepted_token_is_the_callers_problem_and_not_reported_again(
    source: InMemoryRecordSource, clock: ManualClock
) -> None:
    passive = FakePassive(source, clock, outcome="token_accepted")
    client = rejecting_client(source, clock, passive, FakeWeChat({"TOKEN-OLD"}))
    with pytest.raises(WeChatAPIError, match="WeChat still accepts the stored token") as caught:
        client.get(BUSINESS)
    assert caught.value.errcode == 40001
    assert "invalid credential" in str(caught.value)
    with pytest.raises(PassiveRefreshError, match="Not asking"):
        client.get(BUSINESS)
    assert len(passive.calls) == 1


def test_a_replacement_that_never_shows_up_starts_the_back_off(
    source: InMemoryRecordSource, clock: ManualClock
) -> None:
    passive = FakePassive(source, clock, outcome="lease_held")  # the holder never writes
    client = rejecting_client(source, clock, passive, FakeWeChat({"TOKEN-OLD"}))
    with pytest.raises(PassiveRefreshError, match="outcome: lease_held"):
        client.get(BUSINESS)
    with pytest.raises(PassiveRefreshError, match="still held the rejected token"):
        client.get(BUSINESS)
    assert len(passive.calls) == 1


def test_a_table_that_already_holds_a_newer_token_needs_no_report(
    source: InMemoryRecordSource, clock: ManualClock
) -> None:
    passive = FakePassive(source, clock, outcome="failed")
    wechat = FakeWeChat({"TOKEN-OLD"})
    client = rejecting_client(source, clock, passive, wechat)
    client.reader.get(APP)  # caches TOKEN-OLD
    source.put(record(clock, "TOKEN-NEW"))
    assert client.get(BUSINESS)["ip_list"]
    assert passive.calls == []
    assert wechat.seen == ["TOKEN-OLD", "TOKEN-NEW"]
