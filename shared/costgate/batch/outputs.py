"""What the batch feature writes into the documents bucket besides results: error files, and content types."""

import json
from datetime import datetime
from typing import Any

from costgate.batch.ports import ObjectStore

TEXT_CONTENT_TYPE = "text/markdown; charset=utf-8"
JSON_CONTENT_TYPE = "application/json"


def write_error(
    objects: ObjectStore, error_key: str, *, key: str, version_id: str | None, reason: str, at: datetime, **extra: Any
) -> None:
    body = {"key": key, "version_id": version_id, "error": reason, "at": at.isoformat(), **extra}
    objects.put(error_key, json.dumps(body, ensure_ascii=False, indent=2).encode(), JSON_CONTENT_TYPE)
