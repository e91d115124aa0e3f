"""The scenario harness is faithful where it takes a shortcut: ``WireDynamoDB`` answers
exactly what a boto3 client answers, so the layer reads the same record either way."""

from __future__ import annotations

import pytest
from token_refresher.triggers import Scheduled
from wechat_token import TokenNotFoundError, TokenReader, TokenStoreError
from wechat_token.record import ACCESS_TOKEN

from local_aws import dynamodb_client
from tests.scenarios.harness import Deployment, WireDynamoDB

pytestmark = pytest.mark.scenario

APP = "wxharness00000001"


def test_wire_client_answers_like_boto3(deployment: Deployment) -> None:
    deployment.add_app(APP, "harness-secret-0123456789")
    refresher = deployment.refresher()
    refresher.run(Scheduled())
    deployment.clock.advance(3600)
    refresher.run(Scheduled())  # a record with a previous value, counters, history
    boto3 = dynamodb_client(deployment.endpoint_url)
    wire = WireDynamoDB(deployment.endpoint_url)
    try:
        for app in (APP, "wx-not-there"):
            for consistent in (False, True):
                key = {"app_id": {"S": app}, "kind": {"S": ACCESS_TOKEN}}
                expected = boto3.get_item(
                    TableName=deployment.table, Key=key, ConsistentRead=consistent
                )
                expected.pop("ResponseMetadata")  # type: ignore[misc]
                answer = wire.get_item(
                    TableName=deployment.table, Key=key, ConsistentRead=consistent
                )
                assert answer == expected
        readers = [
            TokenReader(deployment.table, client=c, clock=deployment.clock.now)  # type: ignore[arg-type]
            for c in (boto3, wire)
        ]
        assert readers[0].read(APP) == readers[1].read(APP)
        assert readers[0].get(APP) == readers[1].get(APP) == deployment.sim.current_token(APP)
        with pytest.raises(TokenNotFoundError):
            readers[1].get("wx-not-there")
        missing_table = TokenReader("no-such-table", client=wire, clock=deployment.clock.now)  # type: ignore[arg-type]
        with pytest.raises(TokenStoreError, match="ResourceNotFoundException"):
            missing_table.get(APP)
        assert wire.requests == 8
    finally:
        wire.close()
        boto3.close()
