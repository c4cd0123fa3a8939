"""The simulator's token approximation: deterministic, documented, and not a real tokenizer.

Text is cut into runs of one character class and each run costs:

| Run                                                      | Tokens            |
|----------------------------------------------------------|-------------------|
| Latin letters (ASCII and Latin-1/Extended-A/B)           | ceil(n / 5)       |
| Hangul syllables (가-힣)                                 | n                 |
| Hangul jamo (ㄱ, ㅋㅋ, …)                                | n                 |
| CJK ideographs and kana                                  | n                 |
| other letters (Cyrillic, Greek, Arabic, Thai, …)         | ceil(n / 3)       |
| digits                                                   | ceil(n / 3)       |
| punctuation and symbols (BMP)                            | ceil(n / 2)       |
| emoji and other characters beyond the BMP                | 2n                |
| whitespace                                               | 0 for one space, else ceil(n / 4) |

So an English word of up to five letters is one token (about 1.3 tokens per English word, like BPE),
a Korean syllable is one token, and a Korean sentence costs about 1.5× its English translation
(Korean is denser in characters but dearer per character, as with Claude's own tokenizers).

Claude 4.7 and later models use a newer tokenizer that yields about 30% more tokens for the same
text: their text counts are `ceil(13 × base / 10)` (`Tokenizer.CLAUDE_47`). Structural overheads and
the fixed costs of images and documents are the same for both tokenizers.

The structure of a request adds fixed overheads (see `costgate_local.simulator.prompt`).
"""

import re
from enum import Enum
from math import ceil

_HANGUL = "\uac00-\ud7a3"
_JAMO = "\u1100-\u11ff\u3130-\u318f\ua960-\ua97f\ud7b0-\ud7ff"
_CJK = "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f"
_LATIN = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"
_ASTRAL = "\U00010000-\U0010ffff"

# One alternative per character class; the classes are disjoint, so a match is a maximal run of one class.
_RUNS = re.compile(
    rf"(?P<latin>[{_LATIN}]+)"
    rf"|(?P<hangul>[{_HANGUL}]+)"
    rf"|(?P<jamo>[{_JAMO}]+)"
    rf"|(?P<cjk>[{_CJK}]+)"
    rf"|(?P<letter>(?:(?![{_LATIN}{_HANGUL}{_JAMO}{_CJK}])[^\W\d_])+)"
    r"|(?P<digit>\d+)"
    r"|(?P<space>\s+)"
    rf"|(?P<astral>[{_ASTRAL}]+)"
    rf"|(?P<punct>(?:(?![{_ASTRAL}])[^\w\s]|_)+)"
)


class Tokenizer(Enum):
    BASE = "base"
    CLAUDE_47 = "claude-4.7"

    def scale(self, base_tokens: int) -> int:
        """Tokens for text that costs `base_tokens` under the base tokenizer."""
        if self is Tokenizer.CLAUDE_47:
            return ceil(base_tokens * 13 / 10)
        return base_tokens


def count_text(text: str) -> int:
    """Base-tokenizer tokens of `text` (see the module docstring for the formula)."""
    total = 0
    for match in _RUNS.finditer(text):
        kind = match.lastgroup
        n = len(match.group())
        if kind == "latin":
            total += ceil(n / 5)
        elif kind in ("hangul", "jamo", "cjk"):
            total += n
        elif kind in ("letter", "digit"):
            total += ceil(n / 3)
        elif kind == "punct":
            total += ceil(n / 2)
        elif kind == "astral":
            total += 2 * n
        elif kind == "space":
            total += 0 if match.group() == " " else ceil(n / 4)
    return total


# Characters per token in a run of each class (the table above); an astral character costs 2 tokens.
_PIECE_CHARS = {"latin": 5, "hangul": 1, "jamo": 1, "cjk": 1, "letter": 3, "digit": 3, "punct": 2, "space": 4}


def token_pieces(text: str) -> list[tuple[str, int]]:
    """`text` cut into consecutive pieces of one token each (two for a character beyond the BMP).

    The pieces join back into `text` and their tokens add up to `count_text(text)`; a free single
    space rides with the piece after it (with the one before it at the very end). Joining
    consecutive pieces keeps the sum, so a stream can send deltas of a chosen number of tokens.
    """
    pieces: list[tuple[str, int]] = []
    carry = ""
    for match in _RUNS.finditer(text):
        kind, run = match.lastgroup, match.group()
        if kind == "space" and run == " ":
            carry += run
            continue
        if kind == "astral":
            cuts = [(char, 2) for char in run]
        else:
            size = _PIECE_CHARS[str(kind)]
            cuts = [(run[i : i + size], 1) for i in range(0, len(run), size)]
        for piece, tokens in cuts:
            pieces.append((carry + piece, tokens))
            carry = ""
    if carry:
        if pieces:
            last, tokens = pieces.pop()
            pieces.append((last + carry, tokens))
        else:
            pieces.append((carry, 0))
    return pieces


def hangul_share(text: str) -> tuple[int, int]:
    """(Hangul syllables, Latin letters) in `text`: what decides the language of a simulated answer."""
    hangul = sum(len(m) for m in re.findall(f"[{_HANGUL}]+", text))
    latin = sum(len(m) for m in re.findall(f"[{_LATIN}]+", text))
    return hangul, latin
