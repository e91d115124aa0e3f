"""The published record contract (docs/record.md, docs/record.schema.json) is what is stored.

Records written by the real refresher (moto DynamoDB, the WeChat simulator), read back with
the low-level client exactly as a reader in another language sees them, must match the
schema; and the schema, the attribute table in docs/record.md and ``CredentialRecord`` must
name the same attributes with the same types, so that a field added to the record without
being documented fails here.
"""

from __future__ import annotations

import io
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import boto3
import httpx
import jsonschema
import pytest
from moto import mock_aws
from token_refresher.errors import ErrorClass
from token_refresher.outcome import Status
from token_refresher.service import RefreshService
from token_refresher.settings import Settings
from token_refresher.token_store import TokenStore
from token_refresher.triggers import Forced, Passive, Scheduled, parse_passive_event
from token_refresher.wiring import build_service
from wechat_token import LambdaPassiveRefresh
from wechat_token.passive import PASSIVE_BACKOFF_SECONDS, REPLACED_OUTCOMES
from wechat_token.record import (
    RETIRED_ATTRIBUTES,
    CredentialKey,
    CredentialRecord,
    Kind,
    event_key,
    fingerprint,
    ticket_key,
)
from wechat_token.settings import DEFAULT_CACHE_SECONDS, SAFE_MAX_CACHE_SECONDS

from local_aws.resources import create_token_table
from local_aws.static_secrets import StaticSecrets
from simulator import CLASSIC_TOKEN, ManualClock, WeChatSimulator
from tests.support import TableWriter

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCHEMA_PATH = DOCS / "record.schema.json"
DOC_PATH = DOCS / "record.md"

TABLE = "contract"
BASE = "http://wechat.sim"
START = 1_790_000_000.0
CLASSIC, STABLE, WECOM, BROKEN = "wxcontract0000001", "wxcontract0000002", "ww0c:1000002", "wxbad"
COMPONENT, MERCHANT, GONE = "wxcontractcomp001", "wxmerchant000001", "wxmerchant000002"
REGISTRY = {
    CLASSIC: {"secret": "classic-secret", "tickets": ["jsapi", "wx_card"]},
    STABLE: {"type": "stable", "secret": "stable-secret"},
    WECOM: {
        "type": "wecom",
        "corpid": "ww0c",
        "secret": "agent-secret",
        "tickets": ["jsapi", "agent_config"],
    },
    BROKEN: {"secret": "not-the-secret"},
    COMPONENT: {
        "type": "component",
        "secret": "component-secret",
        "token": "message-token",
        "encoding_aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    },
}


# -- records the real refresher writes --------------------------------------------------------


class Snooping(httpx.BaseTransport):
    """The refresher's transport; runs ``during`` once, while a token request is in flight
    (the refresher holds the record's lease then)."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.during: Callable[[], object] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        during, self.during = self.during, None
        if during is not None and request.url.path == CLASSIC_TOKEN:
            during()
        return self.inner.handle_request(request)


@dataclass
class Writer:
    sim: WeChatSimulator
    clock: ManualClock
    service: RefreshService
    dynamodb: Any
    snoop: Snooping

    def item(self, app_id: str, kind: str = "access_token") -> dict[str, Any]:
        """The item exactly as a low-level GetItem returns it (the other languages' view)."""
        key = CredentialKey(app_id, kind).item_key()
        item = self.dynamodb.get_item(TableName=TABLE, Key=key, ConsistentRead=True)["Item"]
        return dict(item)

    def later(self, seconds: float = 200.0) -> None:
        self.clock.advance(seconds)  # past the trigger spacing of forced and passive refreshes


def _written_records() -> dict[str, dict[str, Any]]:
    clock = ManualClock(START)
    sim = WeChatSimulator(clock, seed=13)
    sim.add_app(CLASSIC, "classic-secret")
    sim.add_app(STABLE, "stable-secret")
    sim.add_app(BROKEN, "the-real-secret")
    sim.add_wecom_app("ww0c", "1000002", "agent-secret")
    entry = REGISTRY[COMPONENT]
    sim.platform.add_component(
        COMPONENT, entry["secret"], entry["token"], entry["encoding_aes_key"]
    )
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        create_token_table(dynamodb, TABLE)
        kms = boto3.client("kms", region_name="us-east-1")
        key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        snoop = Snooping(sim.transport())
        service = build_service(
            Settings(
                table_name=TABLE,
                registry_secret_id="apps",
                wechat_api_base_url=BASE,
                wecom_api_base_url=BASE,
                refresh_token_kms_key_id=key_id,
            ),
            dynamodb=dynamodb,
            secrets=StaticSecrets(REGISTRY),  # type: ignore[arg-type]
            http=httpx.Client(transport=snoop),
            clock=clock.now,
            sleep=lambda _: None,
            rng=random.Random(5),
            kms=kms,
        )
        w = Writer(sim, clock, service, dynamodb, snoop)
        return _scenario(w)


def _scenario(w: Writer) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    w.service.run(Scheduled())
    records["access token, first fetch"] = w.item(CLASSIC)
    records["WeCom token"] = w.item(WECOM)
    records["WeCom jsapi ticket"] = w.item(WECOM, "jsapi_ticket")
    records["WeCom agent_config ticket"] = w.item(WECOM, "agent_config_ticket")
    records["never refreshed (wrong secret)"] = w.item(BROKEN)

    w.later()
    w.snoop.during = lambda: records.setdefault("leased, mid-refresh", w.item(CLASSIC))
    w.service.run(Forced(CLASSIC))
    records["access token, rotated"] = w.item(CLASSIC)
    records["jsapi ticket"] = w.item(CLASSIC, "jsapi_ticket")
    records["wx_card ticket"] = w.item(CLASSIC, "wx_card_ticket")

    w.later()
    w.service.run(Forced(STABLE))
    records["stable token, forced"] = w.item(STABLE)

    w.later()
    w.service.run(Forced(WECOM))
    records["WeCom token, handed out again"] = w.item(WECOM)

    stored = TokenStore(w.dynamodb, TABLE).read(CredentialKey(CLASSIC)).value
    assert stored is not None
    w.sim.foreign_fetch(CLASSIC)
    w.sim.foreign_fetch(CLASSIC)  # the stored token is now evicted
    w.later()
    [outcome, *_] = w.service.report(
        Passive(CLASSIC, Kind.ACCESS_TOKEN, fingerprint(stored), 40001)
    )
    assert outcome.status is Status.REFRESHED
    records["after a passive report of a foreign rotation"] = w.item(CLASSIC)

    w.later()
    w.sim.add_fault("errcode", endpoint=CLASSIC_TOKEN, errcode=-1, count=20)
    w.service.run(Forced(CLASSIC))
    w.sim.clear_faults()
    records["after a failed refresh"] = w.item(CLASSIC)
    assert "leased, mid-refresh" in records, "the snooping transport saw no token request"
    records.update(_platform_scenario(w))
    return records


def _platform_scenario(w: Writer) -> dict[str, dict[str, Any]]:
    """A third-party platform's records: tickets pushed, its token, authorizers."""
    records: dict[str, dict[str, Any]] = {}
    callback = TableWriter(w.dynamodb, TABLE)
    for _ in range(2):  # two pushes: the second keeps the first as prior_value
        ticket = w.sim.platform.current_verify_ticket(COMPONENT)
        assert ticket is not None
        callback.store_ticket(COMPONENT, ticket, create_time=w.clock.now())
        w.later(600)
    records["verify ticket, pushed twice"] = w.item(
        ticket_key(COMPONENT).app_id, "component_verify_ticket"
    )
    for merchant in (MERCHANT, GONE):
        grant = w.sim.platform.authorize(COMPONENT, merchant)
        callback.store_authorization(
            COMPONENT, merchant, grant.info_type, create_time=w.clock.now(),
            code=grant.auth_code, code_expires_at=grant.expires_at,
        )  # fmt: skip
    records["authorization event, pending"] = w.item(
        event_key(COMPONENT, MERCHANT).app_id, "authorization"
    )
    w.service.run(Scheduled(types=("component",)))
    # A worker whose authorizer's refresh token was refused claims the reconciliation.
    registry = w.service.registry.load()
    assert w.service.platform.claim_reconcile(registry[COMPONENT], w.clock.now())
    records["component token, reconciled"] = w.item(COMPONENT, "component_access_token")
    records["authorizer token"] = w.item(f"{COMPONENT}:{MERCHANT}")
    records["authorization event, processed"] = w.item(
        event_key(COMPONENT, MERCHANT).app_id, "authorization"
    )
    w.later()
    w.sim.platform.unauthorize(COMPONENT, GONE)
    callback.store_authorization(COMPONENT, GONE, "unauthorized", create_time=w.clock.now())
    w.service.run(Scheduled(types=("component",)))
    records["authorizer, revoked"] = w.item(f"{COMPONENT}:{GONE}")
    return records


@pytest.fixture(scope="module")
def written() -> dict[str, dict[str, Any]]:
    return _written_records()


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return loaded


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema)


def _problems(validator: jsonschema.Draft202012Validator, item: dict[str, Any]) -> list[str]:
    """Where and why an item fails the schema, without quoting values (they are tokens)."""
    return sorted(
        f"{error.json_path}: fails '{error.validator}'" for error in validator.iter_errors(item)
    )


# -- (a) real records against the schema ----------------------------------------------------


def test_the_schema_is_a_valid_draft_2020_12_schema(schema: dict[str, Any]) -> None:
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


SCENARIOS = [
    "access token, first fetch",
    "access token, rotated",
    "jsapi ticket",
    "wx_card ticket",
    "stable token, forced",
    "WeCom token",
    "WeCom token, handed out again",
    "WeCom jsapi ticket",
    "WeCom agent_config ticket",
    "never refreshed (wrong secret)",
    "leased, mid-refresh",
    "after a passive report of a foreign rotation",
    "after a failed refresh",
    "verify ticket, pushed twice",
    "authorization event, pending",
    "component token, reconciled",
    "authorizer token",
    "authorization event, processed",
    "authorizer, revoked",
]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_records_written_by_the_refresher_match_the_schema(
    written: dict[str, dict[str, Any]],
    validator: jsonschema.Draft202012Validator,
    scenario: str,
) -> None:
    item = written[scenario]
    assert _problems(validator, item) == [], f"the {scenario!r} record breaks the contract"
    record = CredentialRecord.from_dynamodb(item, strict=True)  # and the reference reader
    assert record.app_id
    assert record.kind in {str(kind) for kind in Kind}


def test_the_scenarios_show_what_they_are_named_after(written: dict[str, dict[str, Any]]) -> None:
    def record(name: str) -> CredentialRecord:
        return CredentialRecord.from_dynamodb(written[name], strict=True)

    assert record("leased, mid-refresh").lease_owner is not None
    assert record("access token, rotated").previous_fingerprint is not None
    assert record("jsapi ticket").bound_to == record("access token, rotated").fingerprint()
    assert record("stable token, forced").forces_count == 1
    assert record("WeCom token, handed out again").renewable_at is not None
    assert record("never refreshed (wrong secret)").value is None
    assert record("never refreshed (wrong secret)").last_error_code == "40125"
    assert record("after a passive report of a foreign rotation").foreign_rotations == 1
    failed = record("after a failed refresh")
    assert failed.value is not None
    assert failed.error_is_current()
    assert failed.last_error_class == "busy"


def test_the_records_together_use_every_attribute_of_the_schema(
    written: dict[str, dict[str, Any]], schema: dict[str, Any]
) -> None:
    seen = {name for item in written.values() for name in item}
    live = _live_properties(schema)
    assert live - seen == set(), (
        "no scenario writes these schema attributes: extend _scenario so that the schema "
        "test covers them"
    )


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda item: item.update(expires_at={"S": "1790007080"}), "a time stored as a string"),
        (lambda item: item.update(version={"N": "2.5"}), "a fractional version"),
        (lambda item: item.update(kind={"S": "refresh_token"}), "an unknown kind"),
        (lambda item: item.update(colour={"S": "blue"}), "an attribute the contract lacks"),
        (lambda item: item.pop("app_id"), "no partition key"),
        (lambda item: item.pop("expires_at"), "a value without its expiry"),
        (lambda item: item.update(bound_to={"S": "the-token-itself"}), "not a fingerprint"),
        (lambda item: item.update(value={"NULL": True}), "NULL instead of removing"),
    ],
)
def test_the_schema_refuses_records_that_break_the_contract(
    written: dict[str, dict[str, Any]],
    validator: jsonschema.Draft202012Validator,
    change: Callable[[dict[str, Any]], Any],
    why: str,
) -> None:
    item = json.loads(json.dumps(written["jsapi ticket"]))
    change(item)
    assert _problems(validator, item), f"the schema accepts {why}"


# -- (b) drift: schema, docs/record.md and CredentialRecord agree -----------------------------

WIRE_OF_PYTHON = {"str": "S", "int": "N", "float": "N"}


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
    """``node`` and every definition it refers to, outermost first."""
    chain = [node]
    while "$ref" in chain[-1]:
        name = chain[-1]["$ref"].removeprefix("#/$defs/")
        chain.append(schema["$defs"][name])
    return chain


def _wire_type(schema: dict[str, Any], prop: dict[str, Any]) -> str:
    """``S`` or ``N``: the AttributeValue tag the property's definition requires."""
    (tag,) = {t for node in _resolve(schema, prop) for t in node.get("required", [])}
    return str(tag)


def _is_integer(schema: dict[str, Any], prop: dict[str, Any]) -> bool:
    return any(
        node.get("properties", {}).get("N", {}).get("pattern") == "^-?(0|[1-9][0-9]*)$"
        for node in _resolve(schema, prop)
    )


def _live_properties(schema: dict[str, Any]) -> set[str]:
    return {name for name, prop in schema["properties"].items() if not prop.get("deprecated")}


def _python_types() -> dict[str, str]:
    """Each CredentialRecord field's Python type, without ``| None``."""
    return {f.name: str(f.type).split("|")[0].strip() for f in fields(CredentialRecord)}


@dataclass(frozen=True)
class DocRow:
    name: str
    wire: str
    reader: str


def _doc_tables() -> tuple[dict[str, DocRow], dict[str, DocRow]]:
    """The attribute table and the retired-attribute table of docs/record.md."""
    text = DOC_PATH.read_text(encoding="utf-8")
    section = text.split("\n## Attributes\n", 1)[1].split("\n## ", 1)[0]
    current, retired = section.split("**Retired attributes.**", 1)
    retired = retired.split("**Unknown attributes.**", 1)[0]
    return _rows(current, reader_column=True), _rows(retired, reader_column=False)


def _rows(text: str, *, reader_column: bool) -> dict[str, DocRow]:
    rows: dict[str, DocRow] = {}
    for line in text.splitlines():
        match = re.match(r"^\|\s*`([a-z_]+)`\s*\|(.*)\|\s*$", line)
        if not match:
            continue
        cells = [cell.strip() for cell in match.group(2).split("|")]
        name = match.group(1)
        assert name not in rows, f"docs/record.md lists {name!r} twice"
        rows[name] = DocRow(name, cells[0], cells[1] if reader_column else "retired")
    return rows


def test_schema_doc_and_record_name_the_same_attributes(schema: dict[str, Any]) -> None:
    documented, _ = _doc_tables()
    record = set(_python_types())
    in_schema = _live_properties(schema)
    assert record - set(documented) == set(), (
        "CredentialRecord has fields docs/record.md does not document: add a row to its "
        "attribute table (type, reader, meaning)"
    )
    assert record - in_schema == set(), (
        "CredentialRecord has fields docs/record.schema.json does not describe: add them"
    )
    assert set(documented) - record == set(), "docs/record.md documents fields the record lacks"
    assert in_schema - record == set(), "docs/record.schema.json describes fields the record lacks"


def test_retired_attributes_are_the_same_everywhere(schema: dict[str, Any]) -> None:
    _, retired = _doc_tables()
    deprecated = {name for name, prop in schema["properties"].items() if prop.get("deprecated")}
    assert set(retired) == set(RETIRED_ATTRIBUTES), "docs/record.md's retired table is stale"
    assert deprecated == set(RETIRED_ATTRIBUTES), "the schema's deprecated attributes are stale"
    for name in retired:
        assert schema["properties"][name]["x-reader"] == "retired"
        assert retired[name].wire == _wire_type(schema, schema["properties"][name])


def test_schema_doc_and_record_agree_on_each_type(schema: dict[str, Any]) -> None:
    documented, _ = _doc_tables()
    for name, python in _python_types().items():
        prop = schema["properties"][name]
        wire = WIRE_OF_PYTHON.get(python)
        assert wire is not None, f"CredentialRecord.{name}: {python} has no DynamoDB type here"
        assert _wire_type(schema, prop) == wire, (
            f"{name} is {python} in CredentialRecord but {_wire_type(schema, prop)} in the schema"
        )
        assert documented[name].wire == wire, (
            f"{name} is {python} in CredentialRecord but {documented[name].wire} in record.md"
        )
        assert _is_integer(schema, prop) == (python == "int"), (
            f"{name}: the schema's whole-number rule must match CredentialRecord's {python}"
        )


def test_schema_and_doc_agree_on_who_may_rely_on_each_attribute(schema: dict[str, Any]) -> None:
    documented, _ = _doc_tables()
    for name, row in documented.items():
        assert row.reader in {"required", "informational", "internal"}, (name, row.reader)
        assert schema["properties"][name]["x-reader"] == row.reader, name
    required = {name for name, row in documented.items() if row.reader == "required"}
    assert required == {"app_id", "kind", "value", "expires_at"}
    assert set(schema["required"]) == {"app_id", "kind"}


def test_kinds_and_error_classes_are_the_code_s(schema: dict[str, Any]) -> None:
    doc = DOC_PATH.read_text(encoding="utf-8")
    kinds = schema["properties"]["kind"]["properties"]["S"]["enum"]
    assert set(kinds) == {str(kind) for kind in Kind}, "the schema's kinds are not Kind's"
    for kind in Kind:
        assert f"`{kind}`" in doc, f"docs/record.md does not name the kind {kind}"
    classes = schema["properties"]["last_error_class"]["properties"]["S"]["enum"]
    assert set(classes) == {str(c) for c in ErrorClass}, "the schema's error classes are stale"
    for error_class in ErrorClass:
        assert f"`{error_class}`" in doc, f"docs/record.md does not name {error_class}"


# -- the rules in docs/record.md are the code's ----------------------------------------------


def test_the_documented_numbers_are_the_layer_s() -> None:
    doc = DOC_PATH.read_text(encoding="utf-8")
    assert SAFE_MAX_CACHE_SECONDS == 120
    assert "at most 120 s" in doc
    assert DEFAULT_CACHE_SECONDS == 60
    assert "The default is 60 s" in doc
    assert PASSIVE_BACKOFF_SECONDS == 30
    assert "**30 s**" in doc


def test_the_documented_fingerprint_is_the_layer_s() -> None:
    doc = DOC_PATH.read_text(encoding="utf-8")
    assert fingerprint("abc") == "sha256:ba7816bf8f"
    assert "The fingerprint of `abc` is `sha256:ba7816bf8f`" in doc


def _documented_event() -> dict[str, Any]:
    doc = DOC_PATH.read_text(encoding="utf-8")
    block = re.search(r"```json\n\s*(\{.*?\"stale_token\".*?\})\s*\n\s*```", doc, re.S)
    assert block, "docs/record.md shows no passive report event"
    event: dict[str, Any] = json.loads(block.group(1))
    return event


def test_the_documented_report_is_what_the_function_accepts_and_the_layer_sends() -> None:
    event = _documented_event()
    parsed = parse_passive_event(event)
    assert (parsed.app_id, str(parsed.kind), parsed.stale, parsed.errcode) == (
        event["app_id"],
        event["kind"],
        event["stale_token"],
        event["errcode"],
    )

    sent: list[dict[str, Any]] = []

    class Lambda:
        def invoke(self, **request: Any) -> dict[str, Any]:
            assert request["InvocationType"] == "RequestResponse"
            sent.append(json.loads(request["Payload"]))
            answer = {"credentials": [{"app_id": event["app_id"], "outcome": "refreshed"}]}
            return {"Payload": io.BytesIO(json.dumps(answer).encode())}

    passive = LambdaPassiveRefresh("fn", client=Lambda())  # type: ignore[arg-type]
    outcome = passive(event["app_id"], event["kind"], event["stale_token"], event["errcode"])
    assert outcome == "refreshed"
    assert sent == [event], "the layer sends exactly the documented event"


def test_the_documented_event_is_the_only_shape_accepted() -> None:
    event = {**_documented_event(), "force": True}
    with pytest.raises(Exception, match="accepts only"):
        parse_passive_event(event)


def test_every_outcome_is_documented_and_the_retrying_ones_are_the_layer_s() -> None:
    doc = DOC_PATH.read_text(encoding="utf-8")
    table = doc.split("| outcome | meaning | the reader |", 1)[1].split("\n\n", 1)[0]
    for status in Status:
        assert f"`{status}`" in table, f"the outcome table does not mention {status}"
    retrying = set(re.findall(r"^\s*\| `([a-z_]+)` \|[^|]*\| (?:re-read|the same)", table, re.M))
    assert retrying == set(REPLACED_OUTCOMES)
