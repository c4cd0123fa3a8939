"""The local stack's DynamoDB transactions: all or nothing, with only the touched items backed up."""

import boto3
import pytest
from botocore.exceptions import ClientError


def _item(pk: str, value: str) -> dict[str, dict[str, str]]:
    return {"PK": {"S": pk}, "SK": {"S": "X"}, "value": {"N": value}}


def test_a_cancelled_transaction_leaves_every_item_as_it_was(ledger_table: str) -> None:
    # Given an existing item
    client = boto3.client("dynamodb")
    client.put_item(TableName=ledger_table, Item=_item("kept", "1"))

    # When a transaction puts a new item, updates the kept one, then fails a condition on a third
    with pytest.raises(ClientError) as caught:
        client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": ledger_table, "Item": _item("new", "5")}},
                {
                    "Update": {
                        "TableName": ledger_table,
                        "Key": {"PK": {"S": "kept"}, "SK": {"S": "X"}},
                        "UpdateExpression": "ADD #v :one",
                        "ExpressionAttributeNames": {"#v": "value"},
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
                {
                    "Put": {
                        "TableName": ledger_table,
                        "Item": _item("kept-too", "7"),
                        "ConditionExpression": "attribute_exists(PK)",
                    }
                },
            ]
        )

    # Then it was cancelled, and nothing it wrote remains
    assert caught.value.response["Error"]["Code"] == "TransactionCanceledException"
    key = {"SK": {"S": "X"}}
    assert "Item" not in client.get_item(TableName=ledger_table, Key={"PK": {"S": "new"}, **key})
    kept = client.get_item(TableName=ledger_table, Key={"PK": {"S": "kept"}, **key}, ConsistentRead=True)
    assert kept["Item"]["value"] == {"N": "1"}
    assert "Item" not in client.get_item(TableName=ledger_table, Key={"PK": {"S": "kept-too"}, **key})


def test_a_committed_transaction_writes_every_item(ledger_table: str) -> None:
    client = boto3.client("dynamodb")
    client.transact_write_items(
        TransactItems=[{"Put": {"TableName": ledger_table, "Item": _item(f"item-{n}", str(n))}} for n in range(10)]
    )
    found = client.scan(TableName=ledger_table)["Items"]
    assert sorted(int(item["value"]["N"]) for item in found) == list(range(10))
