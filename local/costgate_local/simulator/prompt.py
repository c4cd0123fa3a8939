"""A request's prompt as the cache sees it: blocks in prefix order, their tokens, prefix hashes and breakpoints.

Prefix order is tools → system → messages; each tool definition, system block and message content
block is one block of the prefix. Token cost of a request (what count_tokens returns):

- each block: its content (below) + 1; the first tool also carries the tool-use preamble (300 text
  tokens), each tool 5 more; the first system block 3 more; the first block of each message 3 more
  (a message with no blocks, i.e. an empty final assistant turn, puts its 3 in the tail);
- the tail (the assistant turn the answer will fill): 3 tokens, never cacheable;
- content: text by `costgate_local.simulator.tokens` (scaled for Claude 4.7+); a tool definition by its
  JSON (name, description, input_schema: `cache_control` left out); a tool_use by its name and JSON
  input; a tool_result by its content; an image 1,600 tokens (the cost of a ~1.15-megapixel image); a PDF
  or other binary document 2,000 tokens (a text or content document counts its text); anything else by its JSON.

Each block's prefix hash chains the hash of everything before it, so a hit needs the prefix identical.
Message blocks also hash `tool_choice`, `thinking` and the number of images in the request, and
system and message blocks hash `speed`: changing those invalidates the message (or system) cache
while the tools (and system) stay cached, as the Claude API documents.
"""

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, Literal

from costgate_local.simulator.errors import invalid_request
from costgate_local.simulator.tokens import Tokenizer, count_text
from costgate_local.simulator.validation import UNCACHEABLE_BLOCK_TYPES, MessagesRequest, cache_control_ttl

MAX_BREAKPOINTS = 4
TAIL_TOKENS = 3
BLOCK_OVERHEAD = 1
MESSAGE_OVERHEAD = 3
SYSTEM_OVERHEAD = 3
TOOL_OVERHEAD = 5
TOOLS_PREAMBLE_TEXT_TOKENS = 300
IMAGE_TOKENS = 1_600
BINARY_DOCUMENT_TOKENS = 2_000

type Segment = Literal["tools", "system", "messages"]


@dataclass(frozen=True)
class Breakpoint:
    block: int
    ttl: str


@dataclass(frozen=True)
class Prompt:
    """Blocks in prefix order: `tokens[i]` and `hashes[i]` (of blocks 0..i); `breakpoints` by position."""

    tokens: tuple[int, ...]
    hashes: tuple[bytes, ...]
    tail_tokens: int
    breakpoints: tuple[Breakpoint, ...]

    @property
    def total_tokens(self) -> int:
        return sum(self.tokens) + self.tail_tokens

    def cumulative(self) -> list[int]:
        """Tokens of the prefix ending with each block."""
        return list(accumulate(self.tokens))


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def strip_cache_control(value: Any) -> Any:
    """The value with every `cache_control` removed: a breakpoint marks a prefix, it is not part of it."""
    if isinstance(value, Mapping):
        return {k: strip_cache_control(v) for k, v in value.items() if k != "cache_control"}
    if isinstance(value, list | tuple):
        return [strip_cache_control(v) for v in value]
    return value


def build_prompt(request: MessagesRequest) -> Prompt:
    """The request's prompt blocks; 400 on more than 4 breakpoints or a longer TTL after a shorter one."""
    tokenizer = request.profile.tokenizer
    blocks: list[tuple[Segment, int, Any]] = []
    marks: list[tuple[int, str]] = []  # (block, ttl) for every cache_control, in prefix order
    cacheable: list[bool] = []

    for j, tool in enumerate(request.tools):
        tokens = BLOCK_OVERHEAD + TOOL_OVERHEAD + tokenizer.scale(count_text(canonical_json(strip_cache_control(tool))))
        if j == 0:
            tokens += tokenizer.scale(TOOLS_PREAMBLE_TEXT_TOKENS)
        _mark(marks, len(blocks), tool, f"tools.{j}")
        blocks.append(("tools", tokens, strip_cache_control(tool)))
        cacheable.append(True)

    for j, block in enumerate(request.system):
        tokens = BLOCK_OVERHEAD + (SYSTEM_OVERHEAD if j == 0 else 0) + _content_tokens(block, tokenizer)
        _mark(marks, len(blocks), block, f"system.{j}")
        blocks.append(("system", tokens, strip_cache_control(block)))
        cacheable.append(True)

    tail = TAIL_TOKENS
    for i, message in enumerate(request.messages):
        if not message.blocks:
            tail += MESSAGE_OVERHEAD
        for j, block in enumerate(message.blocks):
            tokens = BLOCK_OVERHEAD + (MESSAGE_OVERHEAD if j == 0 else 0) + _content_tokens(block, tokenizer)
            _mark(marks, len(blocks), block, f"messages.{i}.content.{j}")
            identity = {"role": message.role, "opens_message": j == 0, "block": strip_cache_control(block)}
            blocks.append(("messages", tokens, identity))
            cacheable.append(block.get("type") not in UNCACHEABLE_BLOCK_TYPES)

    if request.cache_control_ttl is not None:
        _automatic_breakpoint(marks, cacheable, request.cache_control_ttl)
    _check_breakpoints(marks)

    contexts: dict[Segment, Any] = {
        "tools": None,
        "system": {"speed": request.speed},
        "messages": {
            "speed": request.speed,
            "tool_choice": request.tool_choice,
            "thinking": request.thinking,
            "images": _image_count(request),
        },
    }
    hashes: list[bytes] = []
    digest = hashlib.sha256(b"costgate-simulator/prefix/v1").digest()
    for segment, _, identity in blocks:
        unit = canonical_json({"segment": segment, "context": contexts[segment], "block": identity})
        digest = hashlib.sha256(digest + unit.encode()).digest()
        hashes.append(digest)

    # A block with several cache_control marks (nested in a tool_result) is one breakpoint; the
    # last mark's TTL closes it, which the order check makes the shortest.
    by_block = {block: ttl for block, ttl in marks}
    return Prompt(
        tokens=tuple(tokens for _, tokens, _ in blocks),
        hashes=tuple(hashes),
        tail_tokens=tail,
        breakpoints=tuple(Breakpoint(block, ttl) for block, ttl in sorted(by_block.items())),
    )


def _mark(marks: list[tuple[int, str]], position: int, block: Mapping[str, Any], where: str) -> None:
    if block.get("cache_control") is not None:
        marks.append((position, cache_control_ttl(block["cache_control"], f"{where}.cache_control")))
    content = block.get("content") if block.get("type") == "tool_result" else None
    if isinstance(content, list):
        for k, inner in enumerate(content):
            if isinstance(inner, Mapping) and inner.get("cache_control") is not None:
                marks.append(
                    (position, cache_control_ttl(inner["cache_control"], f"{where}.content.{k}.cache_control"))
                )


def _automatic_breakpoint(marks: list[tuple[int, str]], cacheable: list[bool], ttl: str) -> None:
    """Automatic caching: a breakpoint on the last cacheable block, using one of the 4 slots."""
    last = max((i for i, ok in enumerate(cacheable) if ok), default=None)
    if last is None:
        return
    explicit = [t for block, t in marks if block == last]
    if not explicit:
        marks.append((last, ttl))
    elif explicit[-1] != ttl:
        raise invalid_request(
            f"cache_control: the top-level cache_control (ttl {ttl}) conflicts with the cache_control "
            f"(ttl {explicit[-1]}) already on the last cacheable block"
        )


def _check_breakpoints(marks: list[tuple[int, str]]) -> None:
    if len(marks) > MAX_BREAKPOINTS:
        raise invalid_request(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {len(marks)}."
        )
    seen_5m = False
    for _, ttl in marks:
        if ttl == "5m":
            seen_5m = True
        elif seen_5m:
            raise invalid_request(
                "a ttl='1h' cache_control block must not come after a ttl='5m' cache_control block. "
                "Note that blocks are processed in the following order: `tools`, `system`, `messages`."
            )


def _content_tokens(block: Mapping[str, Any], tokenizer: Tokenizer) -> int:
    kind = block.get("type")
    if kind == "text":
        return tokenizer.scale(count_text(str(block.get("text", ""))))
    if kind == "image":
        return IMAGE_TOKENS
    if kind == "document":
        return _document_tokens(block, tokenizer)
    if kind == "tool_use":
        return tokenizer.scale(count_text(str(block.get("name", ""))) + count_text(canonical_json(block.get("input"))))
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, str):
            return tokenizer.scale(count_text(content))
        if isinstance(content, list):
            return sum(BLOCK_OVERHEAD + _content_tokens(inner, tokenizer) for inner in content)
        return 0
    if kind == "thinking":
        return tokenizer.scale(count_text(str(block.get("thinking", ""))))
    rest = {k: v for k, v in strip_cache_control(block).items() if k != "type"}
    return tokenizer.scale(count_text(canonical_json(rest)))


def _document_tokens(block: Mapping[str, Any], tokenizer: Tokenizer) -> int:
    source = block.get("source")
    source = source if isinstance(source, Mapping) else {}
    labels = " ".join(str(block[k]) for k in ("title", "context") if isinstance(block.get(k), str))
    text_tokens = count_text(labels)
    if source.get("type") == "text":
        return tokenizer.scale(text_tokens + count_text(str(source.get("data", ""))))
    if source.get("type") == "content":
        inner = source.get("content")
        if isinstance(inner, str):
            return tokenizer.scale(text_tokens + count_text(inner))
        if isinstance(inner, list):
            parts = [b for b in inner if isinstance(b, Mapping)]
            return tokenizer.scale(text_tokens) + sum(BLOCK_OVERHEAD + _content_tokens(b, tokenizer) for b in parts)
    return tokenizer.scale(text_tokens) + BINARY_DOCUMENT_TOKENS


def _image_count(request: MessagesRequest) -> int:
    def images(block: Any) -> int:
        if not isinstance(block, Mapping):
            return 0
        own = 1 if block.get("type") == "image" else 0
        content = block.get("content")
        return own + (sum(images(b) for b in content) if isinstance(content, list) else 0)

    return sum(images(block) for message in request.messages for block in message.blocks)
