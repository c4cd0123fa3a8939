"""The answer cache: serve a stored Claude answer instead of calling Claude, exactly or by meaning.

Which mode applies
    The feature's `answer_cache` (off | exact | semantic, default semantic) is the most a request may
    use; the `x-costgate-cache` request header can only lower it (off < exact < semantic).

Exact
    Every request is eligible. Its key is a SHA-256 over the tenant, the model the request goes to and
    the whole request but `model` and `metadata` (canonical JSON), with the last user turn's text
    normalised: whitespace collapsed, trimmed, trailing punctuation dropped ("How do I reset it ?" and
    "how do i reset it" are different: case is kept, since it can change the meaning of code or names).

Semantic
    Eligible only: exactly one message, from the user, whose content is text (a string or text blocks)
    of at most MAX_SEMANTIC_QUESTION_CHARS characters; no `tools`, no `tool_choice`, no images or
    documents anywhere, no extended thinking. The scope of an
    entry is everything but the question: tenant, model, system, every other parameter, the question's
    language, the embedder and the LSH hasher. Nothing is ever compared across scopes. Within a scope
    the nearest stored question (of the GUARDED_CANDIDATES nearest) whose cosine clears the language's
    threshold AND in which the guards find no material difference is served (`semantic_policy`:
    numbers, units, dates, identifiers, negation, content words and their synonyms, roles).

What is stored
    Only a finished answer: status 200 with `stop_reason` end_turn, stop_sequence or max_tokens (a
    stream's final `message_delta` says it; `max_tokens` is part of the key and the scope, so the same
    request would get the same cut from Claude), its body as Claude sent it (JSON, or the SSE text of a stream: `stream`
    is part of the key and the scope, so a streamed answer only ever serves a streaming request), and
    what it cost: the saving each later hit records.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from costgate.cache.model import AnswerCacheMode, CacheResult, SemanticCandidate, SemanticEntry, StoredAnswer
from costgate.cache.ports import AnswerCacheStore
from costgate.errors import CostgateError

# The semantic path's modules (numpy, the vector index, the guards and their policy) load on its first use:
# a request the semantic cache does not apply to (a conversation, a feature on exact only, `x-costgate-cache:
# off`) never pays for them, nor does a cold start that serves one (about 0.2 s of imports).
if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from costgate.cache.embedding import Embedder
    from costgate.cache.semantic_policy import SemanticPolicy
    from costgate.cache.vector_index import LshHasher

CACHE_HEADER = "x-costgate-cache"
# A DynamoDB item holds 400 KB; an answer is stored compressed with its question and metadata beside it.
MAX_STORED_BODY_BYTES = 350_000
# A warm container keeps this many scopes' entries in memory, each up to this many (oldest evicted
# first): at ~2.7 KB an entry (vector + 16 LSH tables), at most ~220 MB of the function's 1,024 MB.
MAX_WARM_SCOPES = 16
MAX_WARM_ENTRIES_PER_SCOPE = 5_000
# Extra LSH buckets a table lookup reads beyond one per table (each is one more DynamoDB Query). With
# STORE_KEY_BITS-bit keys and none, a cold lookup finds a neighbour at cosine >= 0.95 about 96% of the
# time (bench/bench_semantic_index.py); 16 more Queries would make it 99%.
TABLE_PROBES = 0
# A longer text is not a question a cache should answer by meaning: the embedder reads only its first
# 512 tokens (two texts differing after that would embed alike), and embedding it costs ~100s of ms.
MAX_SEMANTIC_QUESTION_CHARS = 1_000
# The guards judge up to this many nearest stored questions above the threshold, nearest first: the
# nearest may be the one question that differs ("from Seoul to Tokyo" stored after "to Tokyo from
# Seoul") while the next is the same one.
GUARDED_CANDIDATES = 3
# max_tokens too: the cut is part of the request (max_tokens is in the key and the scope), as with Claude.
_STOP_REASONS = frozenset({"end_turn", "stop_sequence", "max_tokens"})
_TRAILING_PUNCTUATION = "?!.。？！~…,;:"
_SPACE = re.compile(r"\s+")
_HANGUL = re.compile(r"[\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]")
_LATIN = re.compile(r"[A-Za-z]")


def effective_mode(header: str | None, feature_mode: AnswerCacheMode) -> AnswerCacheMode:
    """The feature's mode, lowered by the request header if it asks for less."""
    if header is None or not header.strip():
        return feature_mode
    return min(AnswerCacheMode.parse(header, CACHE_HEADER), feature_mode)


def normalise_question(text: str) -> str:
    return _SPACE.sub(" ", text).strip().rstrip(_TRAILING_PUNCTUATION).rstrip()


def exact_key(tenant: str, model: str, body: Mapping[str, Any]) -> str:
    keyed = {k: v for k, v in body.items() if k not in ("model", "metadata")}
    messages = keyed.get("messages")
    if isinstance(messages, list) and messages:
        keyed["messages"] = [*messages[:-1], _normalised_turn(messages[-1])]
    return _digest({"tenant": tenant, "model": model, "request": keyed})


def semantic_question(body: Mapping[str, Any]) -> str | None:
    """The question of a semantic-eligible request (normalised), or None when the request is not eligible."""
    messages = body.get("messages")
    if not isinstance(messages, list) or len(messages) != 1:
        return None
    (turn,) = messages
    if not isinstance(turn, Mapping) or turn.get("role") != "user":
        return None
    if body.get("tools") or body.get("tool_choice") or _thinking_on(body):
        return None
    text = _text_only(turn.get("content"))
    if text is None:
        return None
    question = normalise_question(text)
    if len(question) > MAX_SEMANTIC_QUESTION_CHARS:
        return None
    return question or None


def question_language(question: str) -> str:
    """ "ko" for any Hangul, "en" for Latin letters only, else "other": part of the semantic scope."""
    if _HANGUL.search(question):
        return "ko"
    if _LATIN.search(question):
        return "en"
    return "other"


def semantic_scope(
    *, tenant: str, model: str, body: Mapping[str, Any], question: str, embedder_id: str, hasher_id: str
) -> str:
    """Everything a semantic hit must share with the entry it serves, but the question itself."""
    parameters = {k: v for k, v in body.items() if k not in ("model", "messages", "metadata")}
    return _digest(
        {
            "tenant": tenant,
            "model": model,
            "parameters": parameters,
            "language": question_language(question),
            "embedder": embedder_id,
            "hasher": hasher_id,
        }
    )


def storable(status: int, content_type: str, body: bytes) -> bool:
    """A finished answer small enough to store: 200, stopped by end_turn, a stop sequence or max_tokens."""
    if status != 200 or len(body) > MAX_STORED_BODY_BYTES:
        return False
    if content_type.startswith("text/event-stream"):
        return _stream_stop_reason(body) in _STOP_REASONS
    try:
        message = json.loads(body)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("stop_reason") in _STOP_REASONS


def _normalised_turn(turn: Any) -> Any:
    if not isinstance(turn, Mapping):
        return turn
    content = turn.get("content")
    if isinstance(content, str):
        return {**turn, "content": normalise_question(content)}
    if isinstance(content, list):
        blocks = [
            {**b, "text": normalise_question(b["text"])}
            if isinstance(b, Mapping) and b.get("type") == "text" and isinstance(b.get("text"), str)
            else b
            for b in content
        ]
        return {**turn, "content": blocks}
    return turn


def _text_only(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        return None
    texts: list[str] = []
    for block in content:
        if not isinstance(block, Mapping) or block.get("type") != "text" or not isinstance(block.get("text"), str):
            return None
        texts.append(block["text"])
    return "\n".join(texts)


def _thinking_on(body: Mapping[str, Any]) -> bool:
    thinking = body.get("thinking")
    return isinstance(thinking, Mapping) and thinking.get("type") in ("enabled", "adaptive")


def _stream_stop_reason(body: bytes) -> str | None:
    reason = None
    for line in body.decode("utf-8", errors="replace").splitlines():
        if not line.startswith("data:"):
            continue
        try:
            event = json.loads(line[5:])
        except ValueError:
            return None
        if isinstance(event, dict) and event.get("type") == "message_delta":
            delta = event.get("delta")
            reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if isinstance(event, dict) and event.get("type") == "error":
            return None
    return reason


def _digest(value: Any) -> str:
    canonical = json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --- the service --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lookup:
    """What the cache found, and what it needs to store the answer if it found nothing."""

    result: CacheResult
    answer: StoredAnswer | None
    detail: str  # ASCII, for logs: why a hit, a miss or a bypass
    exact_key: str | None = None
    semantic: _Pending | None = None
    guard_rejection: str | None = None
    error: str | None = None  # the semantic cache could not run (embedder or configuration): exact only


@dataclass(frozen=True)
class _Pending:
    scope: str
    question: str
    vector: npt.NDArray[np.float32]
    bucket_keys: tuple[str, ...]


class _ScopeIndex:
    """A warm container's entries of one scope: vectors in a VectorIndex, questions beside them."""

    def __init__(self, hasher: LshHasher, max_entries: int) -> None:
        from costgate.cache.vector_index import VectorIndex  # noqa: PLC0415 - the semantic path only (above)

        self.index = VectorIndex(hasher, max_entries=max_entries)
        self.questions: dict[str, str] = {}

    def add(self, entry_id: str, question: str, vector: npt.NDArray[np.float32]) -> None:
        self.index.add(entry_id, vector)
        self.questions[entry_id] = question
        self._trim()

    def add_many(self, candidates: list[SemanticCandidate]) -> None:
        self.index.add_many((candidate.entry_id, candidate.vector) for candidate in candidates)
        self.questions.update((candidate.entry_id, candidate.question) for candidate in candidates)
        self._trim()

    def remove(self, entry_id: str) -> None:
        self.index.remove(entry_id)
        self.questions.pop(entry_id, None)

    def _trim(self) -> None:
        if len(self.questions) > 2 * (self.index.max_entries or len(self.questions)):
            # The index evicted its oldest; drop their questions too, in one pass now and then.
            self.questions = {k: v for k, v in self.questions.items() if k in self.index}


class AnswerCache:
    """The exact and semantic answer cache of one warm container, over an AnswerCacheStore.

    The table is the truth: every hit is read back from it (a purged or expired entry is never served),
    and a miss in memory asks the table's LSH buckets, whose candidates then join the memory index. The
    embedder is created on first use, so requests the semantic cache does not apply to never load it.
    """

    def __init__(
        self,
        store: AnswerCacheStore,
        embedder: Callable[[], Embedder],
        *,
        hasher_for: Callable[[Embedder], LshHasher] | None = None,
        policy_for: Callable[[Embedder], SemanticPolicy] | None = None,
        max_scopes: int = MAX_WARM_SCOPES,
        max_entries_per_scope: int = MAX_WARM_ENTRIES_PER_SCOPE,
    ) -> None:
        self._store = store
        self._embedder_factory = embedder
        self._hasher_for = hasher_for or _default_hasher
        self._policy_for = policy_for or _default_policy
        self._policy: SemanticPolicy | None = None
        self._embedder: Embedder | None = None
        self._hasher: LshHasher | None = None
        self._max_scopes = max_scopes
        self._max_entries = max_entries_per_scope
        self._scopes: OrderedDict[str, _ScopeIndex] = OrderedDict()
        self._lock = threading.Lock()

    def lookup(
        self,
        *,
        tenant: str,
        model: str,
        body: Mapping[str, Any],
        mode: AnswerCacheMode,
        threshold: Decimal | None,
        now: datetime,
    ) -> Lookup:
        if mode is AnswerCacheMode.OFF:
            return Lookup(CacheResult.BYPASS, None, "answer cache off")
        key = exact_key(tenant, model, body)
        found = self._store.get_exact(key, now)
        if found is not None:
            return Lookup(CacheResult.EXACT_HIT, found, "exact", exact_key=key)
        if mode is AnswerCacheMode.EXACT:
            return Lookup(CacheResult.MISS, None, "exact miss", exact_key=key)
        question = semantic_question(body)
        if question is None:
            return Lookup(CacheResult.MISS, None, "exact miss; not eligible for the semantic cache", exact_key=key)
        return self._semantic(
            tenant=tenant, model=model, body=body, question=question, threshold=threshold, now=now, key=key
        )

    def remember(self, lookup: Lookup, *, tenant: str, feature: str, answer: StoredAnswer) -> None:
        """Store a fresh answer under the lookup's exact key and, if it was eligible, semantically."""
        if lookup.exact_key is not None:
            self._store.put_exact(lookup.exact_key, tenant, feature, answer)
        pending = lookup.semantic
        if pending is None:
            return
        entry_id = uuid.uuid4().hex
        self._store.put_semantic(
            SemanticEntry(
                scope=pending.scope,
                entry_id=entry_id,
                tenant=tenant,
                feature=feature,
                vector=pending.vector,
                bucket_keys=pending.bucket_keys,
                answer=answer,
            )
        )
        self._scope(pending.scope).add(entry_id, pending.question, pending.vector)

    def _semantic(
        self,
        *,
        tenant: str,
        model: str,
        body: Mapping[str, Any],
        question: str,
        threshold: Decimal | None,
        now: datetime,
        key: str,
    ) -> Lookup:
        try:
            embedder = self._embedder_or_load()
            hasher = self._hasher_or_load(embedder)
            if self._policy is None:
                self._policy = self._policy_for(embedder)
            policy = self._policy
            language = question_language(question)
            limit = threshold if threshold is not None else policy.threshold(language)
            vector = embedder.embed([question])[0]
        except CostgateError as error:
            # An embedder outage or a missing threshold must not fail requests the exact cache and
            # Claude can still answer; the gateway logs it and counts it in AnswerCacheErrors.
            detail = f"exact miss; semantic cache unavailable: {error.message}"
            return Lookup(CacheResult.MISS, None, detail, exact_key=key, error=error.message)
        scope = semantic_scope(
            tenant=tenant,
            model=model,
            body=body,
            question=question,
            embedder_id=embedder.embedder_id,
            hasher_id=hasher.hasher_id,
        )
        from costgate.cache.vector_index import STORE_KEY_BITS  # noqa: PLC0415 - the semantic path only (above)

        pending = _Pending(scope, question, vector, tuple(hasher.bucket_keys(vector, bits=STORE_KEY_BITS)))
        local = self._scope(scope)
        miss = Lookup(CacheResult.MISS, None, "semantic miss", exact_key=key, semantic=pending)

        def fetch() -> None:
            # probe_keys are the extra buckets beyond each table's own (pending.bucket_keys).
            buckets = [*pending.bucket_keys, *hasher.probe_keys(vector, TABLE_PROBES, bits=STORE_KEY_BITS)]
            local.add_many(self._store.semantic_candidates(scope, buckets, now))

        def judge() -> Lookup:
            return self._judge(
                local,
                vector=vector,
                question=question,
                language=language,
                limit=limit,
                policy=policy,
                scope=scope,
                now=now,
                miss=miss,
            )

        best = local.index.nearest(vector, k=GUARDED_CANDIDATES)
        if not best or best[0][1] < limit:
            fetch()
            return judge()
        found = judge()
        if found.answer is None and found.error is None:
            # This container's memory holds only what it has seen: near questions it saw may all be turned
            # away while the one that answers was stored by another container. Its answer must not depend on
            # which container it reached, so the table's candidates are read before a miss.
            fetch()
            found = judge()
        return found

    def _judge(
        self,
        local: _ScopeIndex,
        *,
        vector: Any,
        question: str,
        language: str,
        limit: Decimal,
        policy: SemanticPolicy,
        scope: str,
        now: datetime,
        miss: Lookup,
    ) -> Lookup:
        """The nearest candidates in memory at or above the threshold, judged by the guards in order: the
        first that passes is a hit; else the nearest's reason for a miss."""
        best = local.index.nearest(vector, k=GUARDED_CANDIDATES)
        if not best:
            return miss
        if best[0][1] < limit:
            return replace(miss, detail=f"semantic miss: nearest {best[0][1]:.3f} < {limit}")
        rejection = miss
        for entry_id, similarity in (candidate for candidate in best if candidate[1] >= limit):
            stored_question = local.questions.get(entry_id, "")
            try:
                difference = policy.difference(question, stored_question, language, similarity)
            except CostgateError as error:  # the guards' analyzer could not load: no semantic hit without them
                detail = f"semantic miss; guards unavailable: {error.message}"
                return replace(miss, detail=detail, error=error.message)
            if difference is not None:
                if rejection is miss:  # the nearest's difference is the one reported
                    rejection = replace(miss, detail=f"semantic miss: {difference}", guard_rejection=difference)
                continue
            answer = self._store.get_semantic(scope, entry_id, now)
            if answer is None:
                local.remove(entry_id)  # purged or expired in the table: memory must not outlive it
                return replace(miss, detail="semantic miss: nearest entry is gone")
            return Lookup(
                CacheResult.SEMANTIC_HIT, answer, f"semantic {similarity:.3f} >= {limit}", exact_key=miss.exact_key
            )
        return rejection

    def _scope(self, scope: str) -> _ScopeIndex:
        with self._lock:
            found = self._scopes.get(scope)
            if found is None:
                found = _ScopeIndex(self._hasher_or_load(self._embedder_or_load()), self._max_entries)
                self._scopes[scope] = found
                while len(self._scopes) > self._max_scopes:
                    self._scopes.popitem(last=False)
            else:
                self._scopes.move_to_end(scope)
            return found

    def _embedder_or_load(self) -> Embedder:
        if self._embedder is None:
            self._embedder = self._embedder_factory()
        return self._embedder

    def _hasher_or_load(self, embedder: Embedder) -> LshHasher:
        if self._hasher is None:
            self._hasher = self._hasher_for(embedder)
        return self._hasher


def _default_hasher(embedder: Embedder) -> LshHasher:
    from costgate.cache.vector_index import default_hasher  # noqa: PLC0415 - the semantic path only (above)

    return default_hasher(embedder.embedder_id)


def _default_policy(embedder: Embedder) -> SemanticPolicy:
    from costgate.cache.semantic_policy import default_policy  # noqa: PLC0415 - the semantic path only (above)

    return default_policy(embedder)
