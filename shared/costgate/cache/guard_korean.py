"""The guards' reading of Korean: content words with their roles, negations, numbers and dates, from Kiwi.

Kiwi (`costgate.cache.korean`) gives each morpheme its part of speech and lemma whatever the spacing ("큰 걸로"
and "큰걸로", "며칠 만에" and "며칠만에" read alike) and whatever the ending ("하나요", "해요", "합니다"
all end in 하다), so no particle or ending list is needed here. What this module decides is which
morphemes matter to the meaning of a question, and which part each noun plays:

- Content: nouns (general, proper, Latin, Hanja, roots), counters and units, verbs and adjectives by
  lemma, adverbs but fillers (좀, 혹시, 정말, 어떻게...), and 언제/어디/누구. A noun turned into a verb by
  하다/되다 (변경하다, 배송되다) counts as the noun. Not content: endings, particles, auxiliaries (VX),
  하다/되다/있다/이다, dependent nouns such as 것/수/거, pronouns, interjections, and the framing of a
  question (방법, 절차, 뜻, 문의, 궁금하다, 가능하다, 알려 주다...).
- Roles, from the particle that closes a noun phrase (every noun of the phrase takes it): 이/가 subject,
  을/를 object, 은/는/도/만 topic (subject or object), 에서/부터/로부터 source, 에/으로/까지/에게 goal,
  보다 than, 와/과 with, 의 of, a noun before 이다 the copula's. 와/과 between nouns (JC) coordinates:
  "파이썬과 자바의" gives both nouns the role of the phrase they end in, so their order is free.
- Negations: 안/못 (adverbs), 않다, 없다, 아니다, 말다 (마세요, 말고), 없이, and the prefixes 불/비/미/무/몰
  (불가능, 비회원), whose noun stays a content word.
- Obligations: -어야 (-야) followed by 하다/되다 (해야 하나요, 가야 돼요): "반품해야 하나요?" is not
  "반품해도 되나요?". -어야 alone is a condition (가입해야 살 수 있나요) and is not counted.
- Day words (오늘, 다음 주, 토요일) are dates; native numerals before a noun (두 명, 세 살) are numbers.
"""

from typing import Final

from costgate.cache.guard_words import (
    COPULA,
    DAY_WORDS,
    GOAL,
    OBJECT,
    OF,
    SOURCE,
    SUBJECT,
    THAN,
    TOPIC,
    WITH,
    Word,
    WordsRead,
    join_neighbours,
)
from costgate.cache.korean import Morpheme, morphemes

__all__ = ["read_korean"]


def _split(words: str) -> frozenset[str]:
    return frozenset(words.split())


_NOUNS: Final = frozenset({"NNG", "NNP", "NNB", "SL", "SH", "XR", "NR"})
_VERBS: Final = frozenset({"VV", "VA", "VX", "VCN"})
_FRAMING_NOUNS: Final = _split(
    "방법 법 절차 방식 뜻 의미 정의 질문 문의 궁금 설명 가능 부탁 경우 얼마큼 관련 대해 관해 여부 안내 내용"
)
# Dependent nouns with no content of their own (units and counters after a number are content).
_EMPTY_DEPENDENT_NOUNS: Final = _split(
    "것 거 수 데 지 줄 때문 뿐 듯 척 바 적 터 리 걸 게 등 만 김 채 중 나름 대로 따름"
)
_FRAMING_VERBS: Final = _split(
    "하다 되다 있다 이다 주다 싶다 알리다 가르치다 어떻다 이렇다 그렇다 저렇다 대하다 관하다 궁금하다 "
    "드리다 주시다 어떡하다 가능하다 바라다 원하다"
)
_CONTENT_PRONOUNS: Final = _split("언제 어디 누구")
_FILLER_ADVERBS: Final = _split(
    "좀 혹시 정말 진짜 너무 매우 아주 어떻게 어떡 제발 그냥 보통 또 또는 그리고 그런데 근데 그래서 "
    "꼭 대략 대충 한번 혹 잘 다 그럼 그러면 그래도 대체 도대체 과연 어떤"
)
_NEGATING_ADVERBS: Final = _split("안 못 없이")
_NEGATING_VERBS: Final = _split("않다 없다 아니다 말다")
_NEGATING_PREFIXES: Final = _split("불 비 미 무 몰")
_OBLIGATION_ENDINGS: Final = _split("어야 아야 여야 야")
_MODALS: Final = _split("하다 되다")
_WHAT_OR_HOW: Final = _split("어떻 뭐 무엇 무얼 뭘")
_RELATIVE: Final = {"이번": "this", "다음": "next", "지난": "last", "저번": "last", "오는": "next"}
_RELATIVE_VERBS: Final = {"지나다": "last", "오다": "next"}
_PERIODS: Final = {"주": "week", "달": "month", "해": "year", "주말": "weekend"}
# Native numerals, as Kiwi tags them before a counter (MM: 두 명) or alone (NR: 둘); 한/하나 are mostly "a".
_NUMERALS: Final = {
    "두": 2, "둘": 2, "세": 3, "셋": 3, "네": 4, "넷": 4, "다섯": 5, "여섯": 6, "일곱": 7, "여덟": 8,
    "아홉": 9, "열": 10, "스무": 20, "스물": 20, "서른": 30, "마흔": 40, "쉰": 50,
}  # fmt: skip
_ROLE_OF_ADVERBIAL: Final = {
    "에서": SOURCE, "에게서": SOURCE, "한테서": SOURCE, "로부터": SOURCE, "으로부터": SOURCE, "서": SOURCE,
    "부터": SOURCE, "으로": GOAL, "로": GOAL, "에": GOAL, "에게": GOAL, "한테": GOAL, "께": GOAL, "까지": GOAL,
    "더러": GOAL, "보다": THAN, "와": WITH, "과": WITH, "랑": WITH, "이랑": WITH, "하고": WITH,
}  # fmt: skip
_COORDINATION: Final = "coordination"


def _particle_role(particle: Morpheme) -> str | None:
    tag = particle.tag
    if tag in ("JKS", "JKC"):
        return SUBJECT
    if tag == "JKO":
        return OBJECT
    if tag == "JKG":
        return OF
    if tag == "JC":
        return _COORDINATION
    if tag == "JKB":
        return _ROLE_OF_ADVERBIAL.get(particle.form, f"jkb:{particle.form}")
    if tag == "JX":
        return {"까지": GOAL, "부터": SOURCE}.get(particle.form, TOPIC)
    return None


class _Reader:
    def __init__(self) -> None:
        self.read = WordsRead()
        self.phrase: list[int] = []  # indices in read.words of the open noun phrase
        self.coordinated: list[int] = []  # nouns before 와/과 (JC): they take the next phrase's role
        self.phrase_id = 0
        self.tokens: list[tuple[str, int | None]] = []  # every content-bearing morpheme, for joined spellings
        self.prefix = ""  # a prefix (XPN) waiting for its noun

    def add(self, keys: frozenset[str], text: str, in_phrase: bool) -> None:
        words = self.read.words
        self.tokens.append((text, len(words)))
        words.append(Word(keys=keys, text=text, role=None, position=len(words), phrase=self.phrase_id))
        if in_phrase:
            self.phrase.append(len(words) - 1)
        else:
            self.phrase_id += 1

    def close(self, role: str | None) -> None:
        if role == _COORDINATION:
            self.coordinated += self.phrase
            self.phrase = []
            self.phrase_id += 1
            return
        words = self.read.words
        for index in self.phrase + (self.coordinated if self.phrase else []):
            old = words[index]
            words[index] = Word(old.keys, old.text, role, old.position, old.phrase)
        if self.phrase:
            self.coordinated = []
        self.phrase = []
        self.phrase_id += 1


def read_korean(text: str) -> WordsRead:
    """Read the Korean (and the Latin words within it) of `text`: see the module's docstring."""
    reader = _Reader()
    found = morphemes(text)
    skip = 0
    for index in range(len(found)):
        if skip:
            skip -= 1
            continue
        skip = _read_morpheme(reader, found, index)
    reader.close(None)
    reader.read.joined = join_neighbours(reader.tokens)
    return reader.read


def _read_morpheme(reader: _Reader, found: tuple[Morpheme, ...], index: int) -> int:
    """Read the morpheme at `index`; how many following morphemes were read with it."""
    read = reader.read
    morpheme = found[index]
    following = found[index + 1] if index + 1 < len(found) else None
    tag = morpheme.tag.split("-")[0]
    form = morpheme.form
    prefix, reader.prefix = reader.prefix, ""
    if tag in _NOUNS:
        return int(_read_noun(reader, prefix + form, tag, following))
    if tag.startswith("J"):
        reader.close(_particle_role(morpheme))
    elif tag == "VCP":
        reader.close(COPULA)
    elif tag in _VERBS:
        return _read_verb(reader, found, index)
    elif tag == "MAG":
        reader.close(None)
        if form in _NEGATING_ADVERBS:
            read.negations += 1
        elif form in DAY_WORDS:
            read.dates.append(DAY_WORDS[form])
        elif form not in _FILLER_ADVERBS:
            reader.add(frozenset({form}), form, in_phrase=False)
    elif tag == "MM":
        if form in _NUMERALS and following is not None and following.tag.split("-")[0] in _NOUNS:
            read.numbers.append(str(_NUMERALS[form]))
    elif tag == "XPN":
        if form in _NEGATING_PREFIXES:
            read.negations += 1
        else:
            reader.prefix = form  # 재입고: a prefix that changes the noun's meaning stays with it
    elif tag == "NP":
        reader.close(None)
        if form in _CONTENT_PRONOUNS:
            reader.add(frozenset({form}), form, in_phrase=False)
    elif tag == "EC" and form in _OBLIGATION_ENDINGS and _obligation(found, index):
        reader.close(None)
        read.obligations.append("must")
    elif tag not in ("XSN", "EP", "XSV", "XSA", "XSM"):
        reader.close(None)
    return 0


def _obligation(found: tuple[Morpheme, ...], ending: int) -> bool:
    """-어야 followed by 하다/되다 (해야 하나요, 해야만 돼요) is an obligation; -어야 alone a condition, and
    "어떻게 해야 하나요" / "뭘 해야 하나요" only the framing of a question ("how do I...")."""
    after = ending + 1
    if after < len(found) and found[after].tag == "JX" and found[after].form == "만":
        after += 1
    if not (after < len(found) and found[after].tag.split("-")[0] in ("VV", "VX") and found[after].lemma in _MODALS):
        return False
    verb = found[ending - 1] if ending else None
    if verb is None or verb.tag != "VV" or verb.lemma not in ("하다", "어떡하다"):
        return True
    asked = found[max(0, ending - 3) : ending - 1]
    return verb.lemma != "어떡하다" and not any(m.form in _WHAT_OR_HOW for m in asked)


def _read_verb(reader: _Reader, found: tuple[Morpheme, ...], index: int) -> int:
    read = reader.read
    morpheme = found[index]
    tag = morpheme.tag.split("-")[0]
    lemma = morpheme.lemma
    reader.close(None)
    period = found[index + 2].form if index + 2 < len(found) and found[index + 1].tag == "ETM" else ""
    if lemma in _RELATIVE_VERBS and period in _PERIODS:
        read.dates.append(f"{_RELATIVE_VERBS[lemma]}-{_PERIODS[period]}")  # 지난 주, 오는 달
        return 2
    if lemma in _NEGATING_VERBS or (tag == "VX" and lemma == "말다"):
        read.negations += 1
    elif tag != "VX" and lemma not in _FRAMING_VERBS:
        reader.add(frozenset({lemma}), lemma, in_phrase=False)
    return 0


def _read_noun(reader: _Reader, form: str, tag: str, following: Morpheme | None) -> bool:
    """Read one noun-like morpheme; True when the following morpheme was read with it (다음 + 주)."""
    read = reader.read
    if form in DAY_WORDS:
        read.dates.append(DAY_WORDS[form])
        return False
    if form in _RELATIVE and following is not None and following.form in _PERIODS:
        read.dates.append(f"{_RELATIVE[form]}-{_PERIODS[following.form]}")
        return True
    if tag == "NR" or (form in _NUMERALS and tag == "NNG" and form in ("둘", "셋", "넷")):
        if form in _NUMERALS:
            read.numbers.append(str(_NUMERALS[form]))
        return False
    if tag == "NNB" and form in _EMPTY_DEPENDENT_NOUNS:
        reader.close(None)
        return False
    if form in _FRAMING_NOUNS:
        return False
    if following is not None and following.tag in ("XSV", "XSA"):
        # 변경하다, 배송되다: the noun is the verb's content; the phrase before it is its unmarked argument.
        reader.close(None)
        reader.add(frozenset({form}), form, in_phrase=False)
        return False
    reader.add(frozenset({form}), form, in_phrase=True)
    return False
