"""The guards' reading of English: content words with their roles, negations, numbers and dates.

- Words are compared by lemma, from lemminflect's lexicon (children = child, arrived = arrive, bigger =
  big); a word it does not know is its own lemma. Not content: articles, pronouns, auxiliaries,
  can/could/would/will/may/might/must (should IS content; must and have to are obligations), most
  prepositions (they give roles), fillers (please, hi, thanks) and the framing of a question (what,
  how, which, way, method, step, tell, explain, mean, possible...). Who/where/when/why and
  on/off/up/down/before/after ARE content.
- Roles: a word after from is a SOURCE, after to/into a GOAL (not the infinitive "to translate"), after
  than a THAN, after in an IN, after by a BY and so on, until punctuation, an auxiliary or a
  wh-word ends the phrase; after/before/when/if/until/because open a clause whose words take that
  word as their role. Words joined by and/or/vs share a phrase: their order is free.
- Negations: not, no, never, none, nothing, nobody, nowhere, neither, nor, cannot, without, -n't.
- Obligations: must, should, ought, gotta, and have/has/had to, each by its word (must and have to are
  one: obligation; should is advice), negated when a negation comes with it (shouldn't, don't have
  to). Can/may/possible are not counted: "can I", "may I" and "is it possible to" ask alike.
- Number words (twenty-five = 25; "one" alone is the article) are numbers; day and month names dates.
"""

from functools import lru_cache
from typing import Final

from costgate.cache.guard_words import (
    ABOUT,
    AT,
    BETWEEN,
    BY,
    DAY_WORDS,
    FOR,
    GOAL,
    IN,
    OF,
    SOURCE,
    THAN,
    WITH,
    Word,
    WordsRead,
    join_neighbours,
)

__all__ = ["MONTHS", "read_english"]


def _split(words: str) -> frozenset[str]:
    return frozenset(words.split())


_STOPWORDS: Final = _split(
    """
    a an the this that these those some any each every all both either such own same other another
    i me my mine myself we us our ours you your yours he him his she her hers it its they them their theirs
    is are was were be been being am do does did doing done have has had having get gets got getting
    can could would will shall might may let
    of in at to for from by with about into onto through via per as than so and or but if then also too
    very just really quite rather much many lot lots vs versus
    please tell explain describe show give know want like wonder help hi hello hey thanks thank
    what which how way ways step steps method methods procedure mean means meaning definition define possible
    here there s t d ll ve re m yes okay ok probably maybe perhaps actually basically anyway whatsoever think
    already still even simply able
    """
)
_ROLE_WORDS: Final = {
    "from": SOURCE, "to": GOAL, "into": GOAL, "towards": GOAL, "toward": GOAL, "onto": GOAL, "than": THAN,
    "by": BY, "in": IN, "inside": IN, "for": FOR, "with": WITH, "of": OF, "at": AT, "about": ABOUT,
    "between": BETWEEN, "among": BETWEEN,
}  # fmt: skip
_CLAUSE_WORDS: Final = _split("after before when if while until unless because once whether")
_PHRASE_ENDS: Final = _split(
    "is are was were be been being am do does did can could would will shall might may must should "
    "what which how who whom whose where why when"
)
# Wh-words and modals that end a phrase yet change the question: who vs when, can vs should (must is
# an obligation like have to, counted as one: "must I" = "do I have to").
_CONTENT_PHRASE_ENDS: Final = _split("who where why when should")
_COORDINATORS: Final = _split("and or vs versus nor")
# Obligation words by what they oblige to: must = have to = gotta; should = ought to (advice).
_OBLIGATIONS: Final = {"must": "must", "gotta": "must", "should": "should", "ought": "should"}
_HAVE: Final = _split("have has had having")
# "to" + a verb is an infinitive, not a goal: after these words even when the verb is also a noun (to ship).
_BEFORE_INFINITIVE: Final = _split("how want wants need needs like way able going try trying best easiest where what")
_NEGATIONS: Final = _split(
    "not no never none nothing nobody nowhere neither nor cannot without dont doesnt didnt isnt arent wasnt "
    "werent cant couldnt wont wouldnt shouldnt hasnt havent hadnt mustnt neednt aint shant"
)
_NUMBERS: Final = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_SCALES: Final = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
MONTHS: Final = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7, "august": 8,
    "september": 9, "october": 10, "november": 11, "december": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9, "oct": 10,
    "nov": 11, "dec": 12,
}  # fmt: skip
# A month name that is also an ordinary word (may, mar, jan, ...) is a month only next to a day or a year.
_MONTHS_ALONE: Final = {name: month for name, month in MONTHS.items() if len(name) > 4 or name in {"june", "july"}}
_PUNCTUATION: Final = frozenset(',;:?!.()"/')
_PREFERRED_POS: Final = ("NOUN", "VERB", "ADJ", "ADV", "PROPN")


def is_negation(token: str) -> bool:
    return token in _NEGATIONS or token.endswith("n't")


@lru_cache(maxsize=16384)
def lemmas(word: str) -> tuple[frozenset[str], str]:
    """Every lemma lemminflect knows for `word` (with the word itself), and the one the embedder reads."""
    from lemminflect import getAllLemmas  # type: ignore[import-untyped]  # noqa: PLC0415 - the English guards only

    found = getAllLemmas(word)
    keys = {word, *(lemma for forms in found.values() for lemma in forms)}
    preferred = next((found[pos][0] for pos in _PREFERRED_POS if pos in found), word)
    return frozenset(keys), preferred


@lru_cache(maxsize=16384)
def _can_be_verb(word: str) -> tuple[bool, bool]:
    """(can be a verb, can be a noun) by lemminflect's lexicon."""
    from lemminflect import getAllLemmas  # noqa: PLC0415

    found = getAllLemmas(word)
    return "VERB" in found, "NOUN" in found or "PROPN" in found


def read_english(tokens: list[str]) -> WordsRead:
    """Read a question's Latin tokens and punctuation (lowercase; codes, dates and numbers taken out)."""
    reader = _Reader()
    items = _numbers_read(tokens, reader.read.numbers)
    for index, item in enumerate(items):
        previous = items[index - 1] if index else ""
        following = items[index + 1] if index + 1 < len(items) else ""
        reader.item(item, previous, following)
    read = reader.read
    read.joined = join_neighbours([(text, position) for text, position in reader.joinable if text])
    return read


class _Reader:
    def __init__(self) -> None:
        self.read = WordsRead()
        self.role: str | None = None
        self.phrase = 0
        self.coordinated = False
        # Every token as written (hyphens and apostrophes out), with the word it gave, for joined spellings.
        self.joinable: list[tuple[str, int | None]] = []

    def item(self, item: str, previous: str, following: str) -> None:
        if item in _PUNCTUATION or not item:
            self.role, self.coordinated = None, False
            self.joinable.append(("", None))
            return
        self.joinable.append((item.replace("-", "").replace("'", ""), None))
        obligation = "must" if item in _HAVE and following == "to" else _OBLIGATIONS.get(item.removesuffix("n't"))
        if obligation:
            negated = is_negation(item) or is_negation(previous)  # shouldn't, don't have to
            self.read.obligations.append(f"not-{obligation}" if negated else obligation)
        if is_negation(item):
            self.read.negations += 1
        elif item in _ROLE_WORDS:
            self.role = None if item == "to" and _infinitive(previous, following) else _ROLE_WORDS[item]
        elif item in _CLAUSE_WORDS and not (item == "when" and previous in ("", *_PUNCTUATION)):
            self.role = item
            if item in ("after", "before"):
                self.add(item, None, own_phrase=True)
        elif item in _PHRASE_ENDS:
            self.role = None
            if item in _CONTENT_PHRASE_ENDS:
                self.add(item, None, own_phrase=True)
        elif item in _COORDINATORS:
            self.coordinated = True
        else:
            self.content(item)

    def content(self, item: str) -> None:
        for part in item.split("'"):
            if len(part) < 2 or part in _STOPWORDS:
                continue
            if part in DAY_WORDS:
                self.read.dates.append(DAY_WORDS[part])
            elif part in _MONTHS_ALONE:
                self.read.dates.append(f"m{_MONTHS_ALONE[part]}")
            else:
                self.add(part.replace("-", ""), self.role, own_phrase=not (self.coordinated and self.read.words))
        self.coordinated = False

    def add(self, word: str, role: str | None, own_phrase: bool) -> None:
        if own_phrase:
            self.phrase += 1
        keys, text = lemmas(word)
        if word in _CONTENT_PHRASE_ENDS:
            text = word  # should, not its lemma shall
        words = self.read.words
        words.append(Word(keys=keys, text=text, role=role, position=len(words), phrase=self.phrase))
        self.joinable[-1] = (self.joinable[-1][0], len(words) - 1)


def _infinitive(previous: str, following: str) -> bool:
    verb, noun = _can_be_verb(following)
    return verb and (not noun or previous in _BEFORE_INFINITIVE)


def _numbers_read(tokens: list[str], numbers: list[str]) -> list[str]:
    """Number words become numbers (twenty-five → 25, one hundred and five → 105) and leave the token list."""
    kept: list[str] = []
    total: int | None = None
    section = 0
    words_read = 0

    def close() -> None:
        nonlocal total, section, words_read
        if total is not None and not (total + section == 1 and words_read == 1):
            numbers.append(str(total + section))
        total, section, words_read = None, 0, 0

    for item in tokens:
        parts = item.split("-")
        if all(part in _NUMBERS or part in _SCALES for part in parts):
            for part in parts:
                if part in _NUMBERS:
                    total = total or 0
                    section += _NUMBERS[part]
                    words_read += 1
                elif part == "hundred":
                    total = total or 0
                    section = (section or 1) * 100
                    words_read += 2
                else:
                    total = (total or 0) + (section or 1) * _SCALES[part]
                    section = 0
                    words_read += 2
            continue
        if item == "and" and total is not None:
            continue
        close()
        if parts[0] in _NUMBERS and len(parts) > 1:
            # two-factor: the number and the word
            numbers.append(str(_NUMBERS[parts[0]])) if _NUMBERS[parts[0]] != 1 else None
            kept.append("-".join(parts[1:]))
            continue
        kept.append(item)
    close()
    return kept
