"""Documents: reads, the CHECK queue, and finishing them."""

from collections.abc import Sequence
from datetime import datetime
from typing import Final

from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from costgate.batch.model import Document, DocumentStatus, UsageTotals
from costgate.dal.batch.base import BatchTable, update_if
from costgate.dal.batch.entities import (
    CHECK_QUEUE,
    META,
    QUEUE_INDEX,
    DocumentItem,
    JobItem,
    doc_sk,
    job_changed,
    job_pk,
)
from costgate.dal.batch.records import to_document, totals_map
from costgate.dal.table import transact
from costgate.observability import logger

# Flag counts remembered between documents_to_check and clear_check (see clear_check), newest kept.
_REMEMBERED_FLAGS: Final = 10_000


class DocumentRecords(BatchTable):
    """Document reads and the CHECK queue: which documents to check, clearing them, finishing them."""

    def documents(self, job: str, doc_ids: Sequence[str]) -> dict[str, Document]:
        keys = {(job_pk(job), doc_sk(doc_id)) for doc_id in doc_ids}
        return {item.doc_id: to_document(item) for item in DocumentItem.batch_get(keys, consistent_read=True)}

    def documents_to_check(self, limit: int) -> list[Document]:
        if limit <= 0:
            return []
        flagged = [(item.pk, item.sk) for item in DocumentItem.query(CHECK_QUEUE, index_name=QUEUE_INDEX, limit=limit)]
        fresh = {(item.pk, item.sk): item for item in DocumentItem.batch_get(flagged, consistent_read=True)}
        documents = []
        for key in flagged:
            item = fresh.get(key)
            if item is None or item.queue != CHECK_QUEUE:
                continue  # checked since the index was read
            self._remember_flags(item)
            documents.append(to_document(item))
        return documents

    def clear_check(self, document: Document) -> None:
        """Off the CHECK queue, unless a unit finished (flagging it again) since documents_to_check read it.

        Without that guard a unit finishing between the check's read of the units and this write
        would lose its flag, and the document would wait forever. The flag count read is kept in
        this store; a document it did not read through documents_to_check is cleared unguarded.
        """
        with self._flags_lock:
            flags = self._flags.pop((document.job, document.doc_id), None)
        condition = DocumentItem.pk.exists()
        if flags is not None:
            condition &= DocumentItem.flags == flags
        cleared = update_if(
            DocumentItem(job_pk(document.job), doc_sk(document.doc_id)),
            [DocumentItem.queue.remove(), DocumentItem.queue_at.remove()],
            condition,
        )
        if not cleared:
            logger.info("batches: document flagged again, left on the check list", extra={"doc": document.doc_id})

    def finish_document(
        self,
        document: Document,
        status: DocumentStatus,
        *,
        result_key: str,
        totals: UsageTotals,
        finished_at: datetime,
        model: str | None = None,
        error: str | None = None,
    ) -> bool:
        if status is DocumentStatus.PENDING:
            raise ValueError(f"a document finishes as {DocumentStatus.DONE} or {DocumentStatus.FAILED}")
        actions: list[Action] = [
            DocumentItem.status.set(status.value),
            DocumentItem.result_key.set(result_key),
            DocumentItem.totals.set(totals_map(totals)),
            DocumentItem.finished_at.set(finished_at),
            DocumentItem.queue.remove(),
            DocumentItem.queue_at.remove(),
        ]
        if model is not None:
            actions.append(DocumentItem.model.set(model))
        if error is not None:
            actions.append(DocumentItem.error.set(error))

        def write(transaction: TransactWrite) -> None:
            transaction.update(
                DocumentItem(job_pk(document.job), doc_sk(document.doc_id)),
                actions=actions,
                condition=DocumentItem.status == DocumentStatus.PENDING.value,
            )
            transaction.update(JobItem(job_pk(document.job), META), actions=job_changed(document, at=finished_at))

        codes = transact(write, area="batches", what=f"finish document {document.doc_id}", sleep=self._sleep)
        with self._flags_lock:
            self._flags.pop((document.job, document.doc_id), None)
        return codes is None

    def _remember_flags(self, item: DocumentItem) -> None:
        with self._flags_lock:
            key = (item.job, item.doc_id)
            self._flags[key] = int(item.flags or 0)
            self._flags.move_to_end(key)
            while len(self._flags) > _REMEMBERED_FLAGS:
                self._flags.popitem(last=False)
