"""Guards: does a cached question differ materially from a new one, whatever their embeddings say?

`compare(question, candidate, word_similarity)` reads both questions (`costgate.cache.guard_reading`: Kiwi
for Korean, lemminflect for English) and returns a `Verdict`: a material difference found whatever
the word threshold, or the synonyms it had to assume for the two to be one question.
`Verdict.at(word_threshold)` is None when the questions may share an answer at that threshold, else a
short reason whose kind comes first, in ASCII, before a colon ("numbers differ: 48213 vs 48231",
"roles differ: 서울 source vs goal"); the words after the colon are quoted as read. The verdict is
symmetric (swapping the questions swaps the sides of the reason, never the verdict) and favours
precision: turning away a true paraphrase costs one Claude call, serving a different question's
answer is a wrong answer.

Read in this order; the first difference found is the reason:

1. Codes, dates and numbers (multisets; see `guard_reading`): any difference is material.
2. Quantities: a number both questions have must have the same unit in both ("10 km in miles" vs "10
   miles in km": the conversion runs the other way).
3. Negation and obligation: the number of negations must match (안/못/않/없/아니/말-, 불-/비- prefixes;
   not, no, never, without, -n't...), and so must the number of obligations (must, should, ought to,
   have to; -어야 하다/되다): "반품해야 하나요?" asks whether one must, "반품해도 되나요?" whether one may.
4. Content words, matched by lemma or by spelling with the spaces removed ("회원 가입" = "회원가입",
   "log in" = "login"). What is left unmatched on either side must pair off one to one, at most
   MAX_SYNONYMS pairs, each pair a synonym: an added word ("install python" vs "install python on
   windows") is material; a substituted one is a synonym only if the embedder's similarity of the two
   words (`word_similarity`) reaches the word threshold: 여자/여성 passes, 설치/삭제 does not; two
   words spelled alike (SPELLING_ALIKE: Austria/Australia, install/uninstall) never pass. Only
   when the sentences' similarity reaches the language's lexical threshold (`semantic_policy`) and
   they share at least MIN_SHARED_TO_EXCUSE content words, twice as many as differ, are differing
   content words excused
   (`Verdict.at(..., tolerate_words=True)`); steps 1-3 and 5-7 never are. Both thresholds are
   calibrated (`costgate.calibration`).
5. Roles, over the words both questions share: a word that is a source in one question and a goal in the
   other (Seoul → Tokyo vs Tokyo → Seoul), a subject in one and the compared-with in the other (고양이가
   개보다 vs 개가 고양이보다), or two words that exchange their roles (Korean to English vs English to
   Korean) are material; a role marked on one side only is not (Korean drops particles freely).
6. Order: English words with no marked role that cross over a third one ("the dog chases the cat" vs
   "the cat chases the dog") are material, and so are two Korean nouns of one compound in the other
   order (달러 대비 원화 vs 원화 대비 달러). Words joined by and/or, and Korean phrases, move freely.
7. A pair in which neither question has a content word, a code, a date or a number ("What is it?" vs
   "What's that?") is a material difference too: the guards have nothing to vouch for.

How strict, and why: measured with `costgate cache calibrate` on ../shared/data and on the adversarial
pairs in tests/data/adversarial (README, "The answer cache").
"""

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from itertools import permutations

from costgate.cache import english_lexicon
from costgate.cache.guard_reading import Reading, read
from costgate.cache.guard_words import COMPATIBLE_ROLES, Word

__all__ = [
    "MAX_SYNONYMS",
    "Synonym",
    "Verdict",
    "WordSimilarity",
    "compare",
    "material_difference",
    "synonyms_pass",
]

# More substituted words than this and the questions are different ones, however similar each pair.
MAX_SYNONYMS = 2
# Differing content words are excused (at the lexical threshold) only beside at least this many shared
# ones, and twice as many shared as differing: in a short question every word is the question
# ("install python" vs "install python on windows"), while one detail of a longer one may be no more
# than a detail.
MIN_SHARED_TO_EXCUSE = 4
# Two different words spelled this alike are two names, not two words for one thing (Austria and
# Australia, 오스트리아 and 오스트레일리아, install and uninstall): never synonyms, however similar.
SPELLING_ALIKE = 0.6
_MAX_LISTED = 3

# The embedder's similarity of each pair of words (in the order given).
type WordSimilarity = Callable[[Sequence[tuple[str, str]]], Sequence[float]]


@dataclass(frozen=True)
class Synonym:
    first: str
    second: str
    similarity: float
    listed: bool = False  # WordNet lists the two as synonyms (English only; `english_lexicon`)


@dataclass(frozen=True)
class Verdict:
    difference: str | None  # material whatever the thresholds
    synonyms: tuple[Synonym, ...] = ()  # the word pairs taken as synonyms, if the word threshold allows
    # Content words of either side that neither match nor pair off as synonyms (added or substituted).
    unmatched: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    shared: int = 0  # content words both questions have

    @property
    def excusable(self) -> bool:
        """Enough shared words, and few enough differing ones, that these may be excused at the lexical threshold."""
        differing = len(self.unmatched[0]) + len(self.unmatched[1]) + 2 * len(self.synonyms)
        return self.shared >= MIN_SHARED_TO_EXCUSE and 2 * differing <= self.shared

    @property
    def weakest(self) -> float | None:
        """The lowest similarity among the assumed synonyms no lexicon lists (None when none was needed)."""
        return min((s.similarity for s in self.synonyms if not s.listed), default=None)

    @property
    def weakest_listed(self) -> float | None:
        """The lowest similarity among the assumed synonyms the lexicon lists (None when none was needed)."""
        return min((s.similarity for s in self.synonyms if s.listed), default=None)

    @property
    def lexical(self) -> bool:
        """Words differ beyond synonyms: only a sentence similarity the policy trusts can excuse them."""
        return bool(self.unmatched[0] or self.unmatched[1])

    def at(
        self, word_threshold: float | None, tolerate_words: bool = False, listed_threshold: float | None = None
    ) -> str | None:
        """The reason the questions differ at these word thresholds; None when they may share an answer.

        `tolerate_words`: the sentences are so similar that differing content words are not material
        (`semantic_policy`'s lexical threshold), if enough words are shared; every other difference
        still is. `listed_threshold`: the least similarity of a synonym pair the lexicon lists (it
        also passes at `word_threshold`).
        """
        if self.difference is not None or (tolerate_words and self.excusable):
            return self.difference
        if synonyms_pass(self.weakest, self.weakest_listed, word_threshold, listed_threshold) and not self.lexical:
            return None
        first = sorted([*self.unmatched[0], *(s.first for s in self.synonyms)])
        second = sorted([*self.unmatched[1], *(s.second for s in self.synonyms)])
        return f"content words differ: {_listed(first)} vs {_listed(second)}"


def synonyms_pass(
    weakest: float | None,
    weakest_listed: float | None,
    word_threshold: float | None,
    listed_threshold: float | None,
) -> bool:
    """Every assumed synonym reaches its threshold: the word threshold, or for a listed pair the lower of the two."""
    if weakest is not None and (word_threshold is None or weakest < word_threshold):
        return False
    if weakest_listed is None:
        return True
    limits = [t for t in (word_threshold, listed_threshold) if t is not None]
    return bool(limits) and weakest_listed >= min(limits)


def material_difference(
    question: str,
    candidate: str,
    word_similarity: WordSimilarity | None = None,
    word_threshold: float | None = None,
    tolerate_words: bool = False,
    *,
    listed_threshold: float | None = None,
) -> str | None:
    """None when no guard finds a material difference at these word thresholds, else the reason."""
    return compare(question, candidate, word_similarity).at(word_threshold, tolerate_words, listed_threshold)


def compare(question: str, candidate: str, word_similarity: WordSimilarity | None = None) -> Verdict:
    first, second = read(question), read(candidate)
    for kind, a, b in (
        ("codes", first.codes, second.codes),
        ("dates", first.dates, second.dates),
        ("numbers", first.numbers, second.numbers),
    ):
        reason = _multiset_difference(kind, a, b)
        if reason:
            return Verdict(reason)
    reason = _quantity_difference(first, second)
    if reason:
        return Verdict(reason)
    if first.negations != second.negations:
        return Verdict("negation differs")
    if first.obligations != second.obligations:
        return Verdict(f"obligation differs: {_listed(list(first.obligations))} vs {_listed(list(second.obligations))}")
    if not (first.words or second.words or first.codes or first.dates or first.numbers):
        return Verdict("no content words to compare")
    pairs, only_first, only_second = _match(first, second)
    synonyms: list[Synonym] = []
    unmatched: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    if only_first or only_second:
        paired = _synonyms(only_first, only_second, word_similarity, first.language)
        if paired is None:
            unmatched = tuple(w.text for w in only_first), tuple(w.text for w in only_second)
        synonyms = [Synonym(a.text, b.text, similarity, listed) for a, b, similarity, listed in paired or ()]
    # Roles and order are compared on the words both questions share (a synonym may be no such word).
    reason = _role_difference(pairs) or _order_difference(first.language, pairs)
    return Verdict(reason, tuple(synonyms), unmatched, shared=len(pairs))


# --- items --------------------------------------------------------------------------------------------


def _multiset_difference(kind: str, first: tuple[str, ...], second: tuple[str, ...]) -> str | None:
    a, b = Counter(first), Counter(second)
    if a == b:
        return None
    return f"{kind} differ: {_listed(sorted((a - b).elements()))} vs {_listed(sorted((b - a).elements()))}"


def _quantity_difference(first: Reading, second: Reading) -> str | None:
    units_a: dict[str, set[str]] = {}
    units_b: dict[str, set[str]] = {}
    for number, unit in first.quantities:
        units_a.setdefault(number, set()).add(unit)
    for number, unit in second.quantities:
        units_b.setdefault(number, set()).add(unit)
    for number in sorted(units_a.keys() & units_b.keys()):
        if units_a[number] != units_b[number]:
            a = ", ".join(f"{number} {u}" for u in sorted(units_a[number] - units_b[number]))
            b = ", ".join(f"{number} {u}" for u in sorted(units_b[number] - units_a[number]))
            return f"quantities differ: {a or '(none)'} vs {b or '(none)'}"
    return None


def _listed(items: list[str]) -> str:
    if not items:
        return "(none)"
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (", ..." if len(items) > _MAX_LISTED else "")


# --- words --------------------------------------------------------------------------------------------

type _Pairs = list[tuple[Word, Word]]


def _match(first: Reading, second: Reading) -> tuple[_Pairs, list[Word], list[Word]]:
    """Words of one question matched to the other's by a shared lemma, then by spelling without spaces."""
    pairs: _Pairs = []
    unused = list(second.words)
    only_first: list[Word] = []
    for word in first.words:
        same = [w for w in unused if w.keys & word.keys]
        if not same:
            only_first.append(word)
            continue
        match = next((w for w in same if w.role == word.role), same[0])
        unused.remove(match)
        pairs.append((word, match))
    covered_second = _joined_cover(only_first, second)
    covered_first = _joined_cover(unused, first)
    only_first = [w for w in only_first if not _joined(w, second) and w.position not in covered_first]
    only_second = [w for w in unused if not _joined(w, first) and w.position not in covered_second]
    return pairs, only_first, only_second


def _joined(word: Word, other: Reading) -> bool:
    return any(key in other.joined for key in (word.text, *word.keys))


def _joined_cover(words: list[Word], other: Reading) -> set[int]:
    """Positions of the other question's words that these words spell without spaces ("login" → log, in)."""
    covered: set[int] = set()
    for word in words:
        for key in (word.text, *word.keys):
            covered |= other.joined.get(key, frozenset())
    return covered


def _synonyms(
    only_first: list[Word], only_second: list[Word], word_similarity: WordSimilarity | None, language: str
) -> list[tuple[Word, Word, float, bool]] | None:
    """The one-to-one pairing of the unmatched words with the highest least similarity; None when impossible.

    Each pair: the two words, their similarity, whether the lexicon lists them as synonyms (English).
    """
    if word_similarity is None or len(only_first) != len(only_second) or len(only_first) > MAX_SYNONYMS:
        return None
    cross = [(a, b) for a in only_first for b in only_second]
    similarity = dict(zip(cross, word_similarity([(a.text, b.text) for a, b in cross]), strict=True))
    listed: dict[tuple[Word, Word], bool] = {}
    for a, b in cross:
        found = english_lexicon.relation(a.keys | {a.text}, b.keys | {b.text}) if language == "en" else None
        listed[(a, b)] = found == english_lexicon.SYNONYM
        # Antonyms (on/off) never pass, nor two names spelled alike (Austria/Australia) that no lexicon
        # lists as synonyms (package/parcel are).
        if found == english_lexicon.ANTONYM or (not listed[(a, b)] and _spelled_alike(a.text, b.text)):
            similarity[(a, b)] = 0.0
    best: list[tuple[Word, Word, float, bool]] | None = None
    for order in permutations(only_second):
        pairing = [(a, b, float(similarity[(a, b)]), listed[(a, b)]) for a, b in zip(only_first, order, strict=True)]
        if best is None or min(p[2] for p in pairing) > min(p[2] for p in best):
            best = pairing
    return best


def _spelled_alike(first: str, second: str) -> bool:
    if first in second or second in first:
        return True
    return SequenceMatcher(None, first, second).ratio() >= SPELLING_ALIKE


# --- roles and order ----------------------------------------------------------------------------------


def _clash(first: str | None, second: str | None) -> bool:
    if first is None or second is None or first == second:
        return False
    return frozenset({first, second}) not in COMPATIBLE_ROLES


def _role_difference(pairs: _Pairs) -> str | None:
    for a, b in pairs:
        if _clash(a.role, b.role):
            return f"roles differ: {a.text} {a.role} vs {b.text} {b.role}"
    for index, (a, b) in enumerate(pairs):
        for c, d in pairs[index + 1 :]:
            # Two words that trade places: Korean to English vs English to Korean.
            if a.role != c.role and a.role == d.role and c.role == b.role:
                return f"roles differ: {a.text} {a.role or '-'}, {c.text} {c.role or '-'} exchanged"
    return None


def _order_difference(language: str, pairs: _Pairs) -> str | None:
    if language == "ko":
        for index, (a, b) in enumerate(pairs):
            for c, d in pairs[index + 1 :]:
                same_phrase = a.phrase == c.phrase and b.phrase == d.phrase
                if same_phrase and (a.position < c.position) != (b.position < d.position):
                    return f"word order differs: {a.text}, {c.text}"
        return None
    core = [(a, b) for a, b in pairs if a.role is None and b.role is None]
    for x in core:
        for y in core:
            if x is y or x[0].phrase == y[0].phrase or x[1].phrase == y[1].phrase:
                continue
            if not (x[0].position < y[0].position and y[1].position < x[1].position):
                continue
            # x and y swap places; a swap across a third word they both stand around is a swap of roles.
            for v in core:
                if v is x or v is y:
                    continue
                around_first = x[0].position < v[0].position < y[0].position
                around_second = y[1].position < v[1].position < x[1].position
                if around_first and around_second:
                    return f"word order differs: {x[0].text}, {y[0].text} around {v[0].text}"
    return None
