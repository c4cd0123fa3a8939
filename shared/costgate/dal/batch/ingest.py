"""Registering documents and their units (the ingest port, `DocumentRegistry`)."""

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import batched
from typing import Final

from pynamodb.exceptions import DoesNotExist, PutError

from costgate.batch.model import Document, Unit
from costgate.dal.batch.base import BatchTable
from costgate.dal.batch.entities import META, DocumentItem, JobItem, UnitItem, doc_sk, job_changed, job_pk
from costgate.dal.batch.records import document_item, to_document, unit_item

# put_units writes one conditional PutItem per unit (BatchWriteItem has no conditions): in parallel
# from this many units on, a chunk at a time so 100,000 units never become 100,000 futures at once.
PUT_WORKERS: Final = 8
_PARALLEL_FROM: Final = 16
_PUT_CHUNK: Final = 1_000


class IngestRecords(BatchTable):
    """`DocumentRegistry`: documents and their units, as ingest registers them."""

    def document(self, job: str, doc_id: str) -> Document | None:
        try:
            item = DocumentItem.get(job_pk(job), doc_sk(doc_id), consistent_read=True)
        except DoesNotExist:
            return None
        return to_document(item)

    def put_units(self, units: Sequence[Unit]) -> None:
        if len(units) < _PARALLEL_FROM:
            for unit in units:
                self._put_unit(unit)
            return
        with ThreadPoolExecutor(max_workers=PUT_WORKERS, thread_name_prefix="put-units") as pool:
            for chunk in batched(units, _PUT_CHUNK, strict=False):
                for _ in pool.map(self._put_unit, chunk):
                    pass  # iterating re-raises a worker's error

    def register_document(self, document: Document) -> bool:
        try:
            document_item(document).save(condition=DocumentItem.pk.does_not_exist())
            registered = True
        except PutError as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise
            registered = False
        # Not in one transaction with the put: every upload of a job updates this one item, and
        # concurrent transactions on an item cancel each other where plain updates queue. A crash in
        # between is healed by the event's redelivery, which lands here again (a duplicate re-marks).
        JobItem(job_pk(document.job), META).update(actions=job_changed(document))
        return registered

    def _put_unit(self, unit: Unit) -> None:
        try:
            unit_item(unit).save(condition=UnitItem.pk.does_not_exist())
        except PutError as error:
            if error.cause_response_code != "ConditionalCheckFailedException":
                raise
            # It exists: queued, in flight or finished, with its own attempts; it stays as it is.
