"""DynamoBatchStore: every port of `costgate.batch.ports` over the single table, one part per record kind."""

from costgate.dal.batch.batches import BatchRecords
from costgate.dal.batch.documents import DocumentRecords
from costgate.dal.batch.ingest import IngestRecords
from costgate.dal.batch.manifests import ManifestRecords
from costgate.dal.batch.units import UnitRecords


class DynamoBatchStore(IngestRecords, UnitRecords, BatchRecords, DocumentRecords, ManifestRecords):
    """Batch records in the single table (see `costgate.dal.batch.entities` for the items and queues).

    Every method is one conditional write or one TransactWrite (retried on transaction conflicts), so a
    crash between two calls leaves each record where the scheduler resumes from.
    """
