"""Vectors for calibration, computed once: sentences per pair set and single words, kept on disk between runs.

Embedding KorSTS, KLUE-STS, STS-B and the adversarial pairs takes minutes on the development machine; a rerun
with the same embedder and the same files reads the vectors back (`costgate cache calibrate --cache-dir`).
"""

import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from costgate.cache.embedding import Embedder
from costgate_local.tools.calibration_data import PairSet

_BATCH = 64


def default_cache_dir() -> Path:
    return Path(tempfile.gettempdir()) / "costgate-calibration"


@dataclass
class EmbeddingCache:
    """Vectors by text for one embedder: in memory for a run, on disk per pair set (embedder id + data digest)."""

    embedder: Embedder
    directory: Path | None = field(default_factory=default_cache_dir)
    vectors: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)

    def similarities(self, pair_set: PairSet) -> npt.NDArray[np.float64]:
        """The cosine of each pair, embedding each distinct sentence once (and never again for this file)."""
        texts = list(dict.fromkeys(t for pair in pair_set.pairs for t in (pair.first, pair.second)))
        path = self._path(pair_set)
        stored: list[str] = []
        if path is not None and path.exists():
            stored = self._load(path)
        missing = [t for t in texts if t not in self.vectors]
        for start in range(0, len(missing), _BATCH):
            batch = missing[start : start + _BATCH]
            self.vectors.update(zip(batch, self.embedder.embed(batch), strict=True))
        if path is not None and (missing or not path.exists()):
            self._save(path, list(dict.fromkeys(stored + texts)))
        first = np.stack([self.vectors[p.first] for p in pair_set.pairs]) if pair_set.pairs else np.empty((0, 1))
        second = np.stack([self.vectors[p.second] for p in pair_set.pairs]) if pair_set.pairs else np.empty((0, 1))
        similarity: npt.NDArray[np.float64] = np.einsum("ij,ij->i", first.astype(np.float64), second.astype(np.float64))
        return similarity

    def _path(self, pair_set: PairSet) -> Path | None:
        if self.directory is None:
            return None
        safe_id = re.sub(r"[^A-Za-z0-9.-]+", "_", self.embedder.embedder_id)
        return self.directory / f"{safe_id}-{(pair_set.file_digest or pair_set.digest)[:20]}.npz"

    def _load(self, path: Path) -> list[str]:
        """The texts of the file (all of them, or none when it is damaged or another embedder's)."""
        try:
            with np.load(path, allow_pickle=False) as stored:
                texts = stored["texts"].tolist()
                if stored["vectors"].shape == (len(texts), self.embedder.dimensions):
                    self.vectors.update(zip(texts, stored["vectors"].astype(np.float32), strict=True))
                    return list(texts)
        except (OSError, ValueError, KeyError):
            pass  # a damaged or foreign cache file is recomputed and overwritten
        return []

    def _save(self, path: Path, texts: list[str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        os.close(handle)
        vectors = np.stack([self.vectors[t] for t in texts]) if texts else np.empty((0, self.embedder.dimensions))
        np.savez(temporary, texts=np.array(texts, dtype=str), vectors=vectors.astype(np.float32))
        os.replace(temporary, path)


class WordVectorCache:
    """Vectors of single words for one embedder (the guards' synonym judgement), kept on disk between runs."""

    def __init__(self, embedder: Embedder, directory: Path | None) -> None:
        self.embedder = embedder
        self.vectors: dict[str, npt.NDArray[np.float32]] = {}
        safe_id = re.sub(r"[^A-Za-z0-9.-]+", "_", embedder.embedder_id)
        self._path = directory / f"{safe_id}-words.npz" if directory is not None else None
        self._saved = 0
        if self._path is not None and self._path.exists():
            try:
                with np.load(self._path, allow_pickle=False) as stored:
                    if stored["vectors"].shape[1:] == (embedder.dimensions,):
                        self.vectors.update(zip(stored["words"].tolist(), stored["vectors"], strict=True))
            except (OSError, ValueError, KeyError):
                pass  # a damaged cache file is recomputed and overwritten
            self._saved = len(self.vectors)

    def prepare(self, words: Iterable[str]) -> None:
        missing = list(dict.fromkeys(w for w in words if w not in self.vectors))
        for start in range(0, len(missing), _BATCH):
            batch = missing[start : start + _BATCH]
            self.vectors.update(zip(batch, self.embedder.embed(batch), strict=True))
        if self._path is not None and len(self.vectors) > self._saved:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self._path.parent, suffix=".npz")
            os.close(handle)
            words = sorted(self.vectors)
            np.savez(temporary, words=np.array(words, dtype=str), vectors=np.stack([self.vectors[w] for w in words]))
            os.replace(temporary, self._path)
            self._saved = len(self.vectors)

    def similarity(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        self.prepare(w for pair in pairs for w in pair)
        return [float(np.dot(self.vectors[a], self.vectors[b])) for a, b in pairs]
