"""The scenario harness is faithful where it takes a shortcut: the consumers' in-memory
record source (``TableMirror``) holds exactly what DynamoDB Local holds after every refresher
write, so a consumer reads the same record, token and errors either way."""

from __future__ import annotations

import pytest
from token_refresher.triggers import Forced, Scheduled
from wechat_token import DynamoDBRecordSource, TokenNotFoundError, TokenReader, TokenStoreError
from wechat_token.record import ACCESS_TOKEN, CredentialKey

from local_aws import dynamodb_client
from simulator import CLASSIC_TOKEN
from tests.scenarios.harness import Deployment

pytestmark = pytest.mark.scenario

APP = "wxharness00000001"
KEY = CredentialKey(APP, ACCESS_TOKEN)


def test_the_mirror_holds_what_dynamodb_local_holds(deployment: Deployment) -> None:
    deployment.add_app(APP, "harness-secret-0123456789")
    refresher = deployment.refresher()
    boto3 = dynamodb_client(deployment.endpoint_url)
    table = DynamoDBRecordSource(boto3, deployment.table)
    try:
        assert deployment.mirror.records == {}
        refresher.run(Scheduled())
        assert deployment.mirror.records[KEY] == table.get(KEY, True), "after the first token"
        deployment.clock.advance(3600)
        refresher.run(Scheduled())  # a record with a previous token, counters, history
        assert deployment.mirror.records[KEY] == table.get(KEY, True), "after a rotation"
        deployment.sim.add_fault("errcode", endpoint=CLASSIC_TOKEN, errcode=40164, count=50)
        deployment.clock.advance(600)
        refresher.run(Forced(APP))  # a failure: the error recorded, the token kept
        deployment.sim.clear_faults()
        mirrored = deployment.mirror.records[KEY]
        assert mirrored == table.get(KEY, True), "after a failed refresh"
        assert mirrored.lease_owner is None

        readers = [deployment.reader(), deployment.reader(boto3=True)]
        assert readers[0].read(APP) == readers[1].read(APP)
        assert readers[0].get(APP) == readers[1].get(APP) == deployment.sim.current_token(APP)
        for reader in readers:
            with pytest.raises(TokenNotFoundError):
                reader.get("wx-not-there")
        missing_table = TokenReader("no-such-table", client=boto3, clock=deployment.clock.now)
        with pytest.raises(TokenStoreError, match="ResourceNotFoundException"):
            missing_table.get(APP)
        # Each consumer counts its own reads: read, get, and get of the missing app.
        assert [r.source.reads for r in readers] == [3, 3]  # type: ignore[attr-defined]
    finally:
        boto3.close()


def test_a_table_written_by_the_test_itself_is_seen_after_sync(deployment: Deployment) -> None:
    deployment.add_app(APP, "harness-secret-0123456789")
    deployment.refresher().run(Scheduled())
    boto3 = dynamodb_client(deployment.endpoint_url)
    try:
        boto3.delete_item(TableName=deployment.table, Key=KEY.item_key())
        assert KEY in deployment.mirror.records, "not written through a refresher"
        deployment.sync(APP)
        assert KEY not in deployment.mirror.records
    finally:
        boto3.close()
