"""local_aws.LambdaInvokeServer answers boto3's Lambda client as Lambda does: the handler's
result, a FunctionError with Lambda's error document, ResourceNotFoundException, and it
records what it was asked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from local_aws import LambdaInvokeServer
from local_aws.lambda_invoke import LambdaContext


def _echo(event: Any, context: LambdaContext) -> dict[str, Any]:
    return {
        "event": event,
        "name": context.function_name,
        "left": context.get_remaining_time_in_millis(),
    }


def _boom(event: Any, context: LambdaContext) -> None:
    raise ValueError("boom 42")


@pytest.fixture
def server() -> Iterator[LambdaInvokeServer]:
    with LambdaInvokeServer({"Echo": _echo, "Boom": _boom}, timeout_seconds=30) as running:
        yield running


def _client(server: LambdaInvokeServer) -> Any:
    return boto3.client(
        "lambda",
        endpoint_url=server.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"total_max_attempts": 1}),
    )


def test_a_synchronous_invocation_answers_the_handlers_result(server: LambdaInvokeServer) -> None:
    assert server.endpoint_url.startswith("http://127.0.0.1:")
    reply = _client(server).invoke(FunctionName="Echo", Payload=json.dumps({"a": 1}))
    assert reply["StatusCode"] == 200
    assert "FunctionError" not in reply
    body = json.loads(reply["Payload"].read())
    assert body["event"] == {"a": 1}
    assert body["name"] == "Echo"
    assert 0 < body["left"] <= 30_000
    arn = "arn:aws:lambda:us-east-1:123456789012:function:Echo"
    _client(server).invoke(FunctionName=arn, Payload=b"{}")
    assert server.count("Echo") == 2


def test_a_raising_handler_is_a_function_error(server: LambdaInvokeServer) -> None:
    reply = _client(server).invoke(FunctionName="Boom", Payload=b"{}")
    assert reply["FunctionError"] == "Unhandled"
    body = json.loads(reply["Payload"].read())
    assert body["errorType"] == "ValueError"
    assert body["errorMessage"] == "boom 42"
    [invocation] = server.invocations
    assert invocation.error == "ValueError"


def test_unknown_functions_and_bad_payloads_are_refused(server: LambdaInvokeServer) -> None:
    client = _client(server)
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.invoke(FunctionName="Nope", Payload=b"{}")
    with pytest.raises(client.exceptions.InvalidRequestContentException):
        client.invoke(FunctionName="Echo", Payload=b"{not json")
    assert server.invocations == []
