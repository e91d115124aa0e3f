"""``wechat-token apps list|add|remove``: the registry's secrets edited from the command line.

On moto: secrets come from standard input only (a ``--secret`` flag is refused without being
echoed), entries are checked by the refresher's rules, duplicates across shards are refused,
a full shard spills into a new ``<prefix>NNN`` secret with the first one's resource policy
and KMS key, concurrent edits are detected and retried, and no secret ever reaches stdout,
stderr or an exception.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from token_refresher.registry import RegistryLoader
from wechat_token_ops import apps
from wechat_token_ops.cli import main

FIRST = "wechat-token/apps"
PREFIX = "wechat-token/apps-"
MARK = "S3CR3T"
AES_KEY = "A" * 42 + "B"
TOKEN_MARK = "MSGT0KEN-s3cr3t-value"


def secret_of(app_id: str) -> str:
    return MARK + hashlib.sha256(app_id.encode()).hexdigest()[:26]


def entries(*app_ids: str) -> dict[str, Any]:
    return {app_id: {"secret": secret_of(app_id)} for app_id in app_ids}


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


POLICY_SID = "OnlyTheRefresherReadsTheRegistry"


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        yield World()


class World:
    def __init__(self) -> None:
        self.client = boto3.client("secretsmanager", region_name="us-east-1")
        kms = boto3.client("kms", region_name="us-east-1")
        self.key = kms.create_key()["KeyMetadata"]["KeyId"]
        created = self.client.create_secret(
            Name=FIRST, SecretString=json.dumps(entries("wxfirst")), KmsKeyId=self.key
        )
        self.first_arn = created["ARN"]
        self.policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": POLICY_SID,
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "secretsmanager:GetSecretValue",
                    "Resource": "*",
                    "Condition": {
                        "ArnNotEquals": {
                            "aws:PrincipalArn": ["arn:aws:iam::123456789012:role/refresher"]
                        }
                    },
                },
                {
                    "Sid": "NamedByArn",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "secretsmanager:DeleteSecret",
                    "Resource": self.first_arn,
                },
            ],
        }
        self.client.put_resource_policy(
            SecretId=FIRST, ResourcePolicy=json.dumps(self.policy), BlockPublicPolicy=True
        )
        self.env = {apps.IDS_ENV: FIRST, apps.PREFIX_ENV: PREFIX}
        self.printed: list[str] = []

    def put(self, name: str, value: dict[str, Any]) -> None:
        text = json.dumps(value, separators=(",", ":"))
        try:
            self.client.create_secret(Name=name, SecretString=text)
        except self.client.exceptions.ResourceExistsException:
            self.client.put_secret_value(SecretId=name, SecretString=text)

    def stored(self, name: str) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(
            self.client.get_secret_value(SecretId=name)["SecretString"]
        )
        return value

    def run(
        self,
        *argv: str,
        stdin: str | io.StringIO = "",
        client: Any = None,
        prompt: Any = None,
        env: dict[str, str] | None = None,
    ) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        code = main(
            list(argv),
            secrets=client or self.client,
            env=self.env if env is None else env,
            stdin=stdin if isinstance(stdin, io.StringIO) else io.StringIO(stdin),
            stdout=out,
            stderr=err,
            prompt=prompt or (lambda _: pytest.fail("prompted without a terminal")),
        )
        self.printed += [out.getvalue(), err.getvalue()]
        return code, out.getvalue(), err.getvalue()

    def registry(self) -> Any:
        return RegistryLoader(self.client, FIRST, prefix=PREFIX, cache_seconds=0).load()

    def assert_no_secret(self, *extra: str) -> None:
        for text in [*self.printed, *extra]:
            assert MARK not in text
            assert TOKEN_MARK not in text
            assert AES_KEY not in text


# --- add ------------------------------------------------------------------------------------


def test_add_reads_the_secret_from_stdin_and_the_refresher_sees_it(world: World) -> None:
    secret = secret_of("wxnew")
    code, out, err = world.run("apps", "add", "wxnew", "--tickets", "jsapi", stdin=secret + "\n")
    assert (code, err) == (0, "")
    assert "Added wxnew (classic) to registry secret wechat-token/apps" in out
    assert world.stored(FIRST)["wxnew"] == {"secret": secret, "tickets": ["jsapi"]}
    registry = world.registry()
    assert registry["wxnew"].secret == secret
    assert registry["wxnew"].tickets == ("jsapi",)
    assert registry.shard_of("wxnew") == FIRST
    world.assert_no_secret()


def test_add_prompts_without_echo_on_a_terminal(world: World) -> None:
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return secret_of("wxtty")

    code, _, _ = world.run("apps", "add", "wxtty", stdin=FakeTTY(), prompt=prompt)
    assert code == 0
    assert asked == ["App secret: "]
    assert world.stored(FIRST)["wxtty"]["secret"] == secret_of("wxtty")
    world.assert_no_secret()


@pytest.mark.parametrize(
    "argv",
    [
        ["--secret", secret_of("x")],
        [f"--secret={secret_of('x')}"],
        ["--token", TOKEN_MARK],
        ["--encoding-aes-key", AES_KEY],
    ],
)
def test_a_secret_on_the_command_line_is_refused_unechoed(world: World, argv: list[str]) -> None:
    before = world.stored(FIRST)
    code, _out, err = world.run("apps", "add", "wxarg", *argv, stdin=secret_of("wxarg"))
    assert code == 2
    assert "is refused" in err
    assert "standard input" in err
    assert world.stored(FIRST) == before
    world.assert_no_secret()


def test_a_stray_argument_is_not_echoed(world: World) -> None:
    code, _out, err = world.run("apps", "add", "wxstray", secret_of("pasted"), stdin="x")
    assert code == 2
    assert "1 unrecognized argument(s), not repeated here" in err
    world.assert_no_secret()


def test_add_wants_exactly_one_secret_line(world: World) -> None:
    for stdin in ("", "\n\n", f"{secret_of('a')}\n{secret_of('b')}\n"):
        code, _, err = world.run("apps", "add", "wxlines", stdin=stdin)
        assert code == 2
        assert "one line: the app secret" in err
    world.assert_no_secret()


@pytest.mark.parametrize("form", ["lines", "json"])
def test_a_component_takes_secret_token_and_key_from_stdin(world: World, form: str) -> None:
    values = {"secret": secret_of("comp"), "token": TOKEN_MARK, "encoding_aes_key": AES_KEY}
    stdin = json.dumps(values) if form == "json" else "\n".join(values.values()) + "\n"
    code, _out, err = world.run("apps", "add", "wxcomp", "--type", "component", stdin=stdin)
    assert (code, err) == (0, "")
    assert world.stored(FIRST)["wxcomp"] == {"type": "component", **values}
    config = world.registry()["wxcomp"]
    assert config.message_token == TOKEN_MARK
    assert config.encoding_aes_key == AES_KEY
    world.assert_no_secret()


def test_a_wecom_app_needs_its_corpid_and_keeps_its_agentid(world: World) -> None:
    code, _, err = world.run("apps", "add", "ww1:1000002", "--type", "wecom", stdin="s3")
    assert code == 2
    assert 'needs "corpid"' in err
    code, _, _ = world.run(
        "apps", "add", "ww1:1000002", "--type", "wecom", "--corpid", "ww1",
        "--agentid", "1000002", stdin=secret_of("ww"),
    )  # fmt: skip
    assert code == 0
    assert world.registry()["ww1:1000002"].agentid == "1000002"
    code, _, err = world.run("apps", "add", "wx9", "--corpid", "ww1", stdin="x")
    assert code == 2
    assert "--corpid and --agentid are for --type wecom" in err


@pytest.mark.parametrize(
    ("argv", "stdin", "words"),
    [
        (["--type", "component"], f"{secret_of('c')}\n{TOKEN_MARK}\nshort\n", "encoding_aes_key"),
        (["--tickets", "jsapi,bogus"], secret_of("t"), '"tickets" must be a list'),
        (["--type", "component", "--tickets", "jsapi"], "", "component"),
    ],
)
def test_an_entry_the_refresher_would_refuse_is_refused(
    world: World, argv: list[str], stdin: str, words: str
) -> None:
    if not stdin:
        stdin = json.dumps(
            {"secret": secret_of("c"), "token": TOKEN_MARK, "encoding_aes_key": AES_KEY}
        )
    before = world.stored(FIRST)
    code, _, err = world.run("apps", "add", "wxbad", *argv, stdin=stdin)
    assert code == 2
    assert words in err
    assert world.stored(FIRST) == before
    world.assert_no_secret()


def test_a_bad_app_id_is_refused(world: World) -> None:
    code, _, err = world.run("apps", "add", "wx bad/id", stdin=secret_of("x"))
    assert code == 2
    assert "not a valid app_id" in err


def test_duplicates_across_shards_are_refused(world: World) -> None:
    world.put(f"{PREFIX}001", entries("wxother"))
    world.put(
        f"{PREFIX}002",
        {"ww1:1": {"type": "wecom", "corpid": "ww1", "secret": secret_of("ww")}},
    )
    code, _, err = world.run("apps", "add", "wxother", stdin=secret_of("again"))
    assert code == 2
    assert f"'wxother' is already in registry secret '{PREFIX}001'" in err
    code, _, err = world.run("apps", "add", "alias", "--appid", "wxother", stdin="x1")
    assert code == 2
    assert f"same WeChat app as 'wxother' in registry secret '{PREFIX}001'" in err
    code, _, err = world.run(
        "apps", "add", "ww1:copy", "--type", "wecom", "--corpid", "ww1", stdin=secret_of("ww")
    )
    assert code == 2
    assert "same corpid and app secret" in err
    world.assert_no_secret()


def test_add_refuses_when_a_shard_cannot_be_read(world: World) -> None:
    world.put(f"{PREFIX}001", entries("wxa"))
    world.client.put_secret_value(SecretId=f"{PREFIX}001", SecretString="{not json")
    code, _, err = world.run("apps", "add", "wxnew", stdin=secret_of("wxnew"))
    assert code == 2
    assert f"Cannot check 'wxnew' against every shard: '{PREFIX}001'" in err
    assert "not valid JSON" in err
    world.assert_no_secret()


def test_add_to_a_named_shard(world: World) -> None:
    world.put(f"{PREFIX}001", entries("wxa"))
    code, out, _ = world.run(
        "apps", "add", "wxb", "--shard", f"{PREFIX}001", "--json", stdin=secret_of("wxb")
    )
    assert code == 0
    result = json.loads(out)
    assert result["shards"][0]["secret_id"] == f"{PREFIX}001"
    assert result["shards"][0]["apps"] == 2
    assert set(world.stored(f"{PREFIX}001")) == {"wxa", "wxb"}
    code, _, err = world.run("apps", "add", "wxc", "--shard", "nope", stdin="x")
    assert code == 2
    assert "--shard 'nope' is not one of the registry's secrets" in err
    world.assert_no_secret()


def _fill(world: World, name: str, start: int) -> int:
    """Fill ``name`` to 10 bytes under the limit; the number of entries."""
    data: dict[str, Any] = {}
    n = start
    while len(apps.dump(data).encode()) < apps.SHARD_LIMIT_BYTES - 200:
        data[f"wx{n:016d}"] = {"secret": secret_of(str(n))}
        n += 1
    last = f"wx{n:016d}"
    data[last] = {"secret": ""}
    room = apps.SHARD_LIMIT_BYTES - 10 - len(apps.dump(data).encode())
    data[last] = {"secret": MARK + "p" * (room - len(MARK))}
    assert len(apps.dump(data).encode()) == apps.SHARD_LIMIT_BYTES - 10
    world.put(name, data)
    return len(data)


def test_a_full_shard_spills_into_a_new_one_with_the_first_ones_policy_and_key(
    world: World,
) -> None:
    count = _fill(world, FIRST, 0)
    code, out, err = world.run("apps", "add", "wxspill", stdin=secret_of("wxspill"))
    assert (code, err) == (0, "")
    new = f"{PREFIX}001"
    assert f"Created registry secret {new} with the first shard's KMS key and its resource" in out
    assert world.stored(new) == {"wxspill": {"secret": secret_of("wxspill")}}
    described = world.client.describe_secret(SecretId=new)
    assert described["KmsKeyId"] == world.key
    policy = json.loads(world.client.get_resource_policy(SecretId=new)["ResourcePolicy"])
    assert policy["Statement"][0] == world.policy["Statement"][0]
    assert policy["Statement"][1]["Resource"] == described["ARN"], "the ARN is the new one's"
    registry = world.registry()
    assert len(registry) == count + 1
    assert registry.shard_of("wxspill") == new
    # The next full one makes -002.
    _fill(world, new, 100_000)
    code, out, _ = world.run("apps", "add", "wxspill2", stdin=secret_of("wxspill2"))
    assert code == 0
    assert f"Created registry secret {PREFIX}002" in out
    world.assert_no_secret()


def test_full_shards_without_a_prefix_say_what_to_set(world: World) -> None:
    _fill(world, FIRST, 0)
    code, _, err = world.run(
        "apps", "add", "wxspill", stdin=secret_of("wxspill"), env={apps.IDS_ENV: FIRST}
    )
    assert code == 2
    assert "Every registry secret is full" in err
    assert apps.PREFIX_ENV in err
    code, _, err = world.run("apps", "add", "wxspill", "--shard", FIRST, stdin="x")
    assert code == 2
    assert f"Registry secret '{FIRST}' is full" in err


def test_an_empty_shard_left_by_a_failed_create_is_filled_with_its_policy(world: World) -> None:
    world.client.create_secret(Name=f"{PREFIX}001")  # no value, no policy
    _fill(world, FIRST, 0)
    code, _out, _ = world.run("apps", "add", "wxlate", stdin=secret_of("wxlate"))
    assert code == 0
    assert world.stored(f"{PREFIX}001") == {"wxlate": {"secret": secret_of("wxlate")}}
    policy = json.loads(world.client.get_resource_policy(SecretId=f"{PREFIX}001")["ResourcePolicy"])
    assert policy["Statement"][0]["Sid"] == POLICY_SID


# --- concurrency ----------------------------------------------------------------------------


class Interfering:
    """A Secrets Manager client with another operator editing the same shard: before the
    put (at the describe just before it) or between that check and the put."""

    def __init__(self, world: World, *, when: str, times: int = 1) -> None:
        self.world = world
        self.client = world.client
        self.when = when
        self.times = times
        self.describes = 0
        self.puts = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def _interfere(self) -> None:
        if self.times <= 0:
            return
        self.times -= 1
        current = self.world.stored(FIRST)
        n = len(current)
        current[f"wxother{n}"] = {"secret": secret_of(f"other{n}")}
        self.client.put_secret_value(SecretId=FIRST, SecretString=json.dumps(current))

    def describe_secret(self, **kwargs: Any) -> Any:
        self.describes += 1
        # "check": at the check before the first put; "always": at every check.
        if self.when == "always" or (self.when == "check" and self.describes % 2 == 1):
            self._interfere()
        return self.client.describe_secret(**kwargs)

    def put_secret_value(self, **kwargs: Any) -> Any:
        self.puts += 1
        if self.when == "put":
            self._interfere()
        return self.client.put_secret_value(**kwargs)


def test_a_change_before_the_put_is_detected_and_retried(world: World) -> None:
    client = Interfering(world, when="check")
    code, _out, err = world.run("apps", "add", "wxmine", stdin=secret_of("wxmine"), client=client)
    assert (code, err) == (0, "")
    stored = world.stored(FIRST)
    assert "wxmine" in stored
    assert "wxother1" in stored, "the other operator's change is kept"
    assert client.puts == 1, "no put on a stale read"


def test_a_put_that_lands_between_check_and_put_is_repaired(world: World) -> None:
    client = Interfering(world, when="put")
    code, _, err = world.run("apps", "add", "wxmine", stdin=secret_of("wxmine"), client=client)
    assert (code, err) == (0, "")
    stored = world.stored(FIRST)
    assert "wxmine" in stored
    assert "wxother1" in stored, "their put, which ours replaced, is merged back"


def test_a_shard_that_keeps_changing_fails_clearly(world: World) -> None:
    client = Interfering(world, when="always", times=100)
    code, _, err = world.run("apps", "add", "wxmine", stdin=secret_of("wxmine"), client=client)
    assert code == 2
    assert "kept changing while this command wrote it (3 attempts)" in err
    assert "wxmine" not in world.stored(FIRST)
    assert client.puts == 0
    world.assert_no_secret()


def test_puts_carry_a_fresh_client_request_token(world: World) -> None:
    seen: list[str] = []

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(world.client, name)

        def put_secret_value(self, **kwargs: Any) -> Any:
            seen.append(kwargs["ClientRequestToken"])
            return world.client.put_secret_value(**kwargs)

    for app_id in ("wxa", "wxb"):
        assert world.run("apps", "add", app_id, stdin=secret_of(app_id), client=Recording())[0] == 0
    assert len(set(seen)) == 2
    versions = world.client.describe_secret(SecretId=FIRST)["VersionIdsToStages"]
    assert versions[seen[1]] == ["AWSCURRENT"]
    assert versions[seen[0]] == ["AWSPREVIOUS"]


# --- remove ---------------------------------------------------------------------------------


def test_remove_takes_the_app_out_of_the_shard_holding_it(world: World) -> None:
    world.put(f"{PREFIX}001", entries("wxa", "wxb"))
    code, out, err = world.run("apps", "remove", "wxa")
    assert (code, err) == (0, "")
    assert f"Removed wxa from registry secret {PREFIX}001: now 1 entry" in out
    assert world.stored(f"{PREFIX}001") == entries("wxb")
    assert "wxa" not in world.registry()
    code, _, err = world.run("apps", "remove", "wxa")
    assert code == 2
    assert "'wxa' is in no registry secret" in err
    world.assert_no_secret()


def test_remove_refuses_the_last_entry(world: World) -> None:
    code, _, err = world.run("apps", "remove", "wxfirst")
    assert code == 2
    assert "the registry's last entry" in err
    assert "wxfirst" in world.stored(FIRST)


def test_an_emptied_shard_among_others_is_fine_for_the_refresher(world: World) -> None:
    world.put(f"{PREFIX}001", entries("wxa"))
    assert world.run("apps", "remove", "wxa")[0] == 0
    assert world.stored(f"{PREFIX}001") == {}
    registry = world.registry()
    assert list(registry) == ["wxfirst"]
    assert not registry.fallback, "an empty shard among others is not a mistake"


# --- list -----------------------------------------------------------------------------------


def test_list_shows_every_entry_and_the_refreshers_verdict(world: World) -> None:
    world.put(
        f"{PREFIX}001",
        {
            **entries("wxa", "wxfirst"),
            "wxoff": {"secret": secret_of("off"), "enabled": False},
            "wxweb": {"secret": secret_of("web"), "tickets": ["jsapi", "wx_card"]},
            "wxbroken": secret_of("broken"),  # a string where an object belongs
        },
    )
    code, out, err = world.run("apps", "list", "--color", "never")
    assert code == 1, "a refused entry needs attention"
    assert err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["STATUS", "APP", "TYPE", "APPID", "AGENTID", "TICKETS", "SHARD"]
    rows = {tuple(line.split()[:2]): line.split() for line in lines[1:7]}
    assert rows[("OK", "wxa")] == ["OK", "wxa", "classic", "wxa", "-", "-", f"{PREFIX}001"]
    assert rows[("OK", "wxweb")][5] == "jsapi,wx_card"
    assert rows[("DISABLED", "wxoff")][-1] == f"{PREFIX}001"
    assert rows[("REFUSED", "wxbroken")][2] == "?"
    assert rows[("OK", "wxfirst")][-1] == FIRST
    assert rows[("REFUSED", "wxfirst")][-1] == f"{PREFIX}001"
    assert "6 entries in 2 registry secret(s): 3 ok, 1 disabled, 2 refused." in out
    assert f"- {PREFIX}001: 5 entries," in out
    assert "Needs attention:" in out
    world.assert_no_secret()

    code, out, _ = world.run("apps", "list", "--json")
    data = json.loads(out)
    assert code == 1
    assert data["ok"] is False
    assert {s["secret_id"] for s in data["shards"]} == {FIRST, f"{PREFIX}001"}
    by_app = {(a["app_id"], a["shard"]): a for a in data["apps"]}
    assert by_app[("wxweb", f"{PREFIX}001")]["tickets"] == ["jsapi", "wx_card"]
    assert by_app[("wxfirst", f"{PREFIX}001")]["status"] == "refused"
    assert FIRST in by_app[("wxfirst", f"{PREFIX}001")]["reason"]
    world.assert_no_secret()

    # The refused copy goes; the used one stays.
    assert world.run("apps", "remove", "wxfirst", "--shard", f"{PREFIX}001")[0] == 0
    assert "wxfirst" in world.stored(FIRST)
    assert "wxfirst" not in world.stored(f"{PREFIX}001")
    assert world.registry().invalid.keys() == {"wxbroken"}


def test_list_of_a_healthy_registry_exits_0(world: World) -> None:
    code, out, _ = world.run("apps", "list", "--json")
    assert code == 0
    assert json.loads(out)["apps"] == [
        {
            "app_id": "wxfirst",
            "type": "classic",
            "appid": "wxfirst",
            "agentid": None,
            "tickets": [],
            "shard": FIRST,
            "status": "ok",
            "reason": None,
        }
    ]


def test_list_names_an_unreadable_shard(world: World) -> None:
    code, out, _ = world.run("apps", "list", "--registry", f"{FIRST},wechat-token/gone")
    assert code == 1
    assert "registry secret wechat-token/gone: Could not read" in out
    assert "ResourceNotFoundException" in out


def test_list_without_a_registry_setting_says_what_to_set(world: World) -> None:
    code, _, err = world.run("apps", "list", env={})
    assert code == 2
    assert apps.IDS_ENV in err


def test_the_help_lists_the_apps_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apps", "add", "--help"]) == 0
    text = capsys.readouterr().out
    assert "standard input" in text
    assert "--secret" not in text
