"""Jobs whose manifest is dirty (the MANIFEST queue), and their documents."""

from collections.abc import Iterator

from costgate.batch.model import Document
from costgate.dal.batch.base import BatchTable, update_if
from costgate.dal.batch.entities import MANIFEST_QUEUE, META, QUEUE_INDEX, DocumentItem, JobItem, job_pk
from costgate.dal.batch.records import to_document
from costgate.observability import logger


class ManifestRecords(BatchTable):
    """The MANIFEST queue and a job's documents."""

    def jobs_to_manifest(self, limit: int) -> list[tuple[str, int]]:
        if limit <= 0:
            return []
        dirty = [(item.pk, item.sk) for item in JobItem.query(MANIFEST_QUEUE, index_name=QUEUE_INDEX, limit=limit)]
        fresh = {(item.pk, item.sk): item for item in JobItem.batch_get(dirty, consistent_read=True)}
        return [
            (item.job, int(item.changes))
            for key in dirty
            if (item := fresh.get(key)) is not None and item.queue == MANIFEST_QUEUE
        ]

    def job_documents(self, job: str) -> Iterator[Document]:
        for item in DocumentItem.query(job_pk(job), DocumentItem.sk.startswith("DOC#"), consistent_read=True):
            yield to_document(item)

    def manifest_written(self, job: str, changes: int) -> None:
        written = update_if(
            JobItem(job_pk(job), META),
            [JobItem.manifest_changes.set(changes), JobItem.queue.remove(), JobItem.queue_at.remove()],
            JobItem.changes == changes,
        )
        if not written:
            logger.info("batches: job changed while its manifest was written", extra={"job": job})
