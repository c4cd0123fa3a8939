"""A batch's requests, built from its units' documents: a text's parts with the job's instruction, a
.jsonl's own lines, and a split text's combining request from its parts' summaries.

Documents are read from their registered S3 version; one whose input is gone (deleted before it was
summarised) fails its pending units, which flags it for the finishing step.
"""

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from costgate.batch.input import COMBINE_NOTE, MAX_TEXT_BYTES, PART_NOTE, decode_text, request_line
from costgate.batch.model import Document, DocumentKind, Unit, UnitKind, UnitState
from costgate.batch.ports import ObjectStore, UnitInputs
from costgate.errors import NotFoundError


class RequestBuilder:
    def __init__(self, store: UnitInputs, objects: ObjectStore) -> None:
        self.store = store
        self.objects = objects

    def build(
        self, document: Document, units: Sequence[Unit]
    ) -> tuple[Document, list[tuple[Unit, Mapping[str, Any]]] | None]:
        """The document and its units' requests; None when its input (or a part summary) is gone."""
        try:
            return document, list(self._params(document, units))
        except NotFoundError:
            return document, None

    def input_gone(self, document: Document) -> None:
        """Fail the document's pending units: its input was deleted before they could be sent."""
        reason = f"{document.name} (version {document.version_id}) was deleted before it could be summarised"
        error = json.dumps({"type": "errored", "error": {"type": "not_found_error", "message": reason}})
        for unit in self.store.units_of(document):
            if unit.state is UnitState.PENDING:
                self.store.fail_pending_unit(unit, error)

    def _params(self, document: Document, units: Sequence[Unit]) -> Iterator[tuple[Unit, Mapping[str, Any]]]:
        if document.kind is DocumentKind.REQUESTS:
            wanted = {unit.start: unit for unit in units}
            for index, raw in enumerate(self.objects.lines(document.key, document.version_id)):
                if index in wanted:
                    yield wanted[index], request_line(raw)[1]
            return
        text: str | None = None
        parts = document.units
        for unit in units:
            if unit.kind is UnitKind.COMBINE:
                yield unit, self._text_params(document, self._combined_parts(document))
                continue
            if text is None:
                raw = self.objects.read(document.key, document.version_id, max_bytes=MAX_TEXT_BYTES)
                text = decode_text(raw, document.name)
            content = _document_block(document.name, text[unit.start : unit.end])
            if unit.kind is UnitKind.PART:
                content = PART_NOTE.format(part=unit.seq + 1, parts=parts) + "\n\n" + content
            yield unit, self._text_params(document, content)

    def _combined_parts(self, document: Document) -> str:
        parts = [unit for unit in self.store.units_of(document) if unit.kind is UnitKind.PART]
        summaries = [
            self.objects.read(str(unit.output_key), max_bytes=MAX_TEXT_BYTES).decode("utf-8") for unit in parts
        ]
        blocks = "\n\n".join(
            f'<part number="{index + 1}">\n{summary}\n</part>' for index, summary in enumerate(summaries)
        )
        return COMBINE_NOTE.format(parts=len(parts)) + "\n\n" + blocks

    @staticmethod
    def _text_params(document: Document, content: str) -> dict[str, Any]:
        return {
            "model": document.model,
            "max_tokens": document.max_tokens,
            # Every request of the job starts with the same instruction: cached for an hour, it is
            # written once per batch run and read by the rest (when it reaches the model's minimum).
            "system": [
                {"type": "text", "text": document.instruction, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
            ],
            "messages": [{"role": "user", "content": content}],
        }


def _document_block(name: str, text: str) -> str:
    return f'<document name="{name}">\n{text}\n</document>'
