"""Record the DynamoDB calls real code makes, each with the read and write units DynamoDB would charge.

While `recording()` is active every DynamoDB call made through botocore (pynamodb's and boto3's
clients alike) is wrapped at `BaseClient._make_api_call`, the one method every botocore operation
goes through: pynamodb builds a client per thread and per connection, so a hook registered on one
client would miss the others. For each call the recorder notes the operation, the phase it ran in
(`phase`, which the caller moves to AFTER when the Claude call begins) and, per item it touched,
the units: a write is charged on the larger of the item before and after it (both read back through
`read_item`, whose own calls are never recorded), twice in a transaction, also when DynamoDB refuses it on a condition;
a read on the size of the items read (a Query's together), halved when eventually consistent. Global
secondary indexes the template declares are charged as DynamoDB does: a put, a delete, or both
when a write moves an item's index key.

Only a single table is followed (the template's); calls to other tables are recorded without charges.
"""

import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import botocore.client
from botocore.exceptions import ClientError

from costgate_local.tools.capacity import Call, Charge, Phase, item_size, read_units, write_units

type Item = dict[str, dict[str, Any]]

_CONDITION_FAILED = "ConditionalCheckFailedException"
_CANCELLED = "TransactionCanceledException"
_EQUALS = re.compile(r"(#\w+)\s*=\s*(:\w+)")


@dataclass(frozen=True)
class Index:
    """A global secondary index: its name, key attributes and projection (ALL | KEYS_ONLY | INCLUDE)."""

    name: str
    hash_key: str
    range_key: str | None
    projection: str
    included: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSchema:
    name: str
    hash_key: str
    range_key: str | None
    indexes: tuple[Index, ...] = ()

    @classmethod
    def from_create_args(cls, args: Mapping[str, Any]) -> "TableSchema":
        """From boto3 `create_table` keyword arguments (`costgate_local.stack.template.table_create_args`)."""

        def keys(schema: Sequence[Mapping[str, str]]) -> tuple[str, str | None]:
            kinds = {entry["KeyType"]: entry["AttributeName"] for entry in schema}
            return kinds["HASH"], kinds.get("RANGE")

        hash_key, range_key = keys(args["KeySchema"])
        indexes = []
        for index in args.get("GlobalSecondaryIndexes", ()):
            index_hash, index_range = keys(index["KeySchema"])
            projection = index.get("Projection", {})
            indexes.append(
                Index(
                    name=index["IndexName"],
                    hash_key=index_hash,
                    range_key=index_range,
                    projection=projection.get("ProjectionType", "ALL"),
                    included=tuple(projection.get("NonKeyAttributes", ())),
                )
            )
        return cls(args["TableName"], hash_key, range_key, tuple(indexes))

    def key_names(self) -> list[str]:
        return [self.hash_key] + ([self.range_key] if self.range_key else [])

    def key_of(self, item: Mapping[str, Any]) -> Item:
        return {name: item[name] for name in self.key_names()}


@dataclass(frozen=True)
class _Write:
    key: Item
    transactional: bool
    put: Item | None  # the item a Put writes (its size counts even when the condition fails)
    check_only: bool = False


class DynamoRecorder:
    """Wraps botocore while `recording()` is active; `take()` hands over the calls recorded since the last take.

    `read_item(key)` returns the item under a key as it is now (strongly consistent), or None.
    """

    def __init__(self, read_item: Callable[[Item], Item | None], schema: TableSchema) -> None:
        self._read_item = read_item
        self._reading = threading.local()
        self._schema = schema
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self.phase = Phase.BEFORE

    @contextmanager
    def recording(self) -> Iterator["DynamoRecorder"]:
        original = botocore.client.BaseClient._make_api_call
        recorder = self

        def make_api_call(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            reading = getattr(recorder._reading, "active", False)
            if reading or client.meta.service_model.service_name != "dynamodb":
                return original(client, operation_name, api_params)
            return recorder._record(lambda: original(client, operation_name, api_params), operation_name, api_params)

        botocore.client.BaseClient._make_api_call = make_api_call
        try:
            yield self
        finally:
            botocore.client.BaseClient._make_api_call = original

    def take(self) -> tuple[Call, ...]:
        with self._lock:
            calls, self._calls = tuple(self._calls), []
        return calls

    # --- one call ----------------------------------------------------------------------------------------

    def _record(self, send: Any, operation: str, params: dict[str, Any]) -> Any:
        phase = self.phase
        issued = time.monotonic()  # before the local AWS, which serves one call at a time, may make it wait
        writes = self._writes(operation, params)
        before = {_frozen(w.key): self._get(w.key) for w in writes}
        try:
            response = send()
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            charges = self._refused_charges(code, writes, before)
            self._append(Call(operation, phase, charges, error=code, issued=issued, done=time.monotonic()))
            raise
        done = time.monotonic()
        charges = (*self._write_charges(writes, before), *self._read_charges(operation, params, response))
        self._append(Call(operation, phase, charges, issued=issued, done=done))
        return response

    def _append(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def _writes(self, operation: str, params: Mapping[str, Any]) -> list[_Write]:
        if operation == "PutItem" and self._ours(params):
            return [_Write(self._schema.key_of(params["Item"]), False, params["Item"])]
        if operation in ("UpdateItem", "DeleteItem") and self._ours(params):
            return [_Write(params["Key"], False, None)]
        if operation == "TransactWriteItems":
            writes = []
            for entry in params["TransactItems"]:
                ((action, body),) = entry.items()
                if not self._ours(body):
                    continue
                if action == "Put":
                    writes.append(_Write(self._schema.key_of(body["Item"]), True, body["Item"]))
                else:
                    writes.append(_Write(body["Key"], True, None, check_only=action == "ConditionCheck"))
            return writes
        if operation == "BatchWriteItem":
            writes = []
            for request in params["RequestItems"].get(self._schema.name, ()):
                if "PutRequest" in request:
                    item = request["PutRequest"]["Item"]
                    writes.append(_Write(self._schema.key_of(item), False, item))
                else:
                    writes.append(_Write(request["DeleteRequest"]["Key"], False, None))
            return writes
        return []

    def _write_charges(self, writes: Sequence[_Write], before: Mapping[tuple[Any, ...], Item | None]) -> list[Charge]:
        charges: list[Charge] = []
        for write in writes:
            old = before[_frozen(write.key)]
            new = old if write.check_only else self._get(write.key)
            size = max(item_size(old) if old else 0, item_size(new) if new else 0)
            charges.append(self._charge("write", write.key, write_units(size, transactional=write.transactional)))
            if not write.check_only:
                charges.extend(self._index_charges(old, new, write.transactional))
        return charges

    def _refused_charges(
        self, code: str, writes: Sequence[_Write], before: Mapping[tuple[Any, ...], Item | None]
    ) -> tuple[Charge, ...]:
        """A refused condition still costs: the new item's size for an existing item, 1 unit for a new one;
        a cancelled transaction consumes its items' units too. Other errors (throttling, validation) cost nothing."""
        if code not in (_CONDITION_FAILED, _CANCELLED):
            return ()
        charges = []
        for write in writes:
            old = before[_frozen(write.key)]
            size = item_size(write.put) if write.put is not None else item_size(old) if old else 0
            units = write_units(size, transactional=write.transactional)
            charges.append(self._charge("write", write.key, units))
        return tuple(charges)

    def _index_charges(self, old: Item | None, new: Item | None, transactional: bool) -> list[Charge]:
        charges = []
        for index in self._schema.indexes:
            before, after = self._index_entry(index, old), self._index_entry(index, new)
            if before is None and after is None:
                continue
            if before is not None and after is not None and before[0] == after[0]:
                entries = [max(before, after, key=lambda entry: entry[1])]
            else:
                entries = [entry for entry in (before, after) if entry is not None]
            for (partition, _), size in entries:
                units = write_units(size, transactional=transactional)
                charges.append(Charge("write", f"{index.name}:{partition}", None, units))
        return charges

    def _index_entry(self, index: Index, item: Item | None) -> tuple[tuple[str, str | None], int] | None:
        if item is None or index.hash_key not in item or (index.range_key and index.range_key not in item):
            return None
        keys = {index.hash_key, *([index.range_key] if index.range_key else []), *self._schema.key_of(item)}
        if index.projection == "ALL":
            projected = item
        else:
            kept = keys | set(index.included if index.projection == "INCLUDE" else ())
            projected = {name: value for name, value in item.items() if name in kept}
        range_value = _scalar(item[index.range_key]) if index.range_key else None
        return (_scalar(item[index.hash_key]), range_value), item_size(projected)

    # --- reads -----------------------------------------------------------------------------------------------

    def _read_charges(self, operation: str, params: Mapping[str, Any], response: Mapping[str, Any]) -> list[Charge]:
        if operation == "GetItem" and self._ours(params):
            found = self._get(params["Key"])
            size = item_size(found) if found else 0
            return [self._charge("read", params["Key"], read_units(size, consistent=_consistent(params)))]
        if operation == "BatchGetItem":
            request = params["RequestItems"].get(self._schema.name)
            if request is None:
                return []
            charges = []
            for key in request["Keys"]:
                found = self._get(key)
                units = read_units(item_size(found) if found else 0, consistent=_consistent(request))
                charges.append(self._charge("read", key, units))
            return charges
        if operation == "TransactGetItems":
            charges = []
            for entry in params["TransactItems"]:
                body = entry["Get"]
                if self._ours(body):
                    found = self._get(body["Key"])
                    units = read_units(item_size(found) if found else 0, transactional=True)
                    charges.append(self._charge("read", body["Key"], units))
            return charges
        if operation in ("Query", "Scan") and self._ours(params):
            return [self._query_charge(operation, params, response)]
        return []

    def _query_charge(self, operation: str, params: Mapping[str, Any], response: Mapping[str, Any]) -> Charge:
        """A Query reads its matching items in one sum (before any filter); a Scan is charged to '(scan)'."""
        index_name = params.get("IndexName")
        items = response.get("Items", [])
        sizes = []
        for item in items:
            if all(name in item for name in self._schema.key_names()):
                full = self._get(self._schema.key_of(item))
                sizes.append(item_size(full) if full else item_size(item))
            else:
                sizes.append(item_size(item))
        filtered_out = int(response.get("ScannedCount", len(items))) - len(items)
        if filtered_out > 0:
            # What a filter dropped was read all the same; its sizes are unknown, count them as the mean.
            mean = sum(sizes) // len(sizes) if sizes else 0
            sizes.extend([mean] * filtered_out)
        units = read_units(sum(sizes), consistent=_consistent(params))
        if operation == "Scan":
            return Charge("read", "(scan)", None, units)
        partition = self._query_partition(params, index_name)
        return Charge("read", f"{index_name}:{partition}" if index_name else partition, None, units)

    def _query_partition(self, params: Mapping[str, Any], index_name: str | None) -> str:
        hash_key = self._schema.hash_key
        if index_name is not None:
            hash_key = next(index.hash_key for index in self._schema.indexes if index.name == index_name)
        names = params.get("ExpressionAttributeNames", {})
        values = params.get("ExpressionAttributeValues", {})
        for name, value in _EQUALS.findall(params.get("KeyConditionExpression", "")):
            if names.get(name, name) == hash_key:
                return _scalar(values[value])
        raise ValueError(f"cannot find the partition key in {params.get('KeyConditionExpression')!r}")

    # --- helpers ---------------------------------------------------------------------------------------------

    def _ours(self, params: Mapping[str, Any]) -> bool:
        return params.get("TableName") == self._schema.name

    def _get(self, key: Item) -> Item | None:
        self._reading.active = True
        try:
            return self._read_item(key)
        finally:
            self._reading.active = False

    def _charge(self, kind: str, key: Mapping[str, Any], units: Decimal) -> Charge:
        partition = _scalar(key[self._schema.hash_key])
        item = _scalar(key[self._schema.range_key]) if self._schema.range_key else ""
        return Charge("write" if kind == "write" else "read", partition, item, units)


def _consistent(params: Mapping[str, Any]) -> bool:
    return bool(params.get("ConsistentRead", False))


def _scalar(value: Mapping[str, Any]) -> str:
    ((_, data),) = value.items()
    return data.decode() if isinstance(data, bytes) else str(data)


def _frozen(key: Mapping[str, Mapping[str, Any]]) -> tuple[Any, ...]:
    return tuple(sorted((name, _scalar(value)) for name, value in key.items()))
