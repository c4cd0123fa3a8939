"""Reading a question for the guards: normalised text, codes, dates, numbers with their units, then words.

`read(text)` NFKC-normalises and case-folds the text, takes out (in this order, each step seeing only
what the earlier ones left) URLs and e-mail addresses, dates and times, versions, letter-digit codes,
Korean unit numbers (3만) and digit numbers, then hands the rest to the Korean reader (any Hangul) or
the English one. Each number keeps the unit written right after it (10킬로미터, 10 miles, $50 → dollar):
"10 km in miles" and "10 miles in km" hold the same number with different units.

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
   25) and Korean native numerals before a noun (두 명, 세 살). One as a word (one, 한, 하나) is ignored:
   it is mostly the article "a".
"""

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Final

from costgate.cache.guard_english import MONTHS as _MONTHS
from costgate.cache.guard_english import lemmas, read_english
from costgate.cache.guard_korean import read_korean
from costgate.cache.guard_words import Word
from costgate.cache.korean import morphemes

__all__ = ["Reading", "read"]


@dataclass(frozen=True)
class Reading:
    language: str  # "ko" when the text has Hangul, else "en"
    codes: tuple[str, ...]
    dates: tuple[str, ...]
    numbers: tuple[str, ...]
    # (number, unit) for each number written with a unit after it (or a currency sign before it).
    quantities: tuple[tuple[str, str], ...]
    negations: int
    obligations: tuple[str, ...]  # must, should, have to; -어야 하다/되다 (see `WordsRead`)
    words: tuple[Word, ...]
    joined: dict[str, frozenset[int]]


@lru_cache(maxsize=16384)
def read(text: str) -> Reading:
    text = unicodedata.normalize("NFKC", text).casefold().replace("\u2019", "'").replace("\u2018", "'")
    codes: list[str] = []
    dates: list[str] = []
    numbers: list[str] = []
    quantities: list[tuple[str, str]] = []
    korean = _HANGUL.search(text) is not None

    def number(value: str, unit: str) -> None:
        numbers.append(value)
        if unit:
            quantities.append((value, unit))

    text = _take(_URL, text, lambda m: codes.append(m.group(0).rstrip(".,;:!?)'\"")))
    text = _take(_EMAIL, text, lambda m: codes.append(m.group(0)))
    for pattern, form in _DATE_PATTERNS:
        text = _take(pattern, text, lambda m, form=form: dates.extend(_date(m, form).split()))  # type: ignore[misc]
    text = _take(_VERSION, text, lambda m: _keep_version(m, codes))
    text = _take(_ALNUM_CODE, text, lambda m: _code_or_number(m, codes, number))
    text = _take(_KOREAN_UNITS, text, lambda m: number(_korean_units(m.group(0)), _unit_after(m, korean)))
    text = _take(_NUMBER, text, lambda m: number(m.group(0).replace(",", ""), _unit_after(m, korean)))

    words = read_korean(text) if korean else read_english(_TOKEN.findall(text))
    return Reading(
        language="ko" if korean else "en",
        codes=tuple(sorted(codes)),
        dates=tuple(sorted(dates + words.dates)),
        numbers=tuple(sorted(numbers + words.numbers)),
        quantities=tuple(sorted(quantities)),
        negations=words.negations,
        obligations=tuple(sorted(words.obligations)),
        words=tuple(words.words),
        joined=words.joined,
    )


def _take(pattern: re.Pattern[str], text: str, found: Callable[[re.Match[str]], str | None]) -> str:
    """Hand every match to `found` and replace it by what `found` returns (a space when None)."""

    def replace(match: re.Match[str]) -> str:
        kept = found(match)
        return f" {kept} " if kept else " "

    return pattern.sub(replace, text)


_HANGUL: Final = re.compile(r"[가-힣]")
_TOKEN: Final = re.compile(r"[a-z]+(?:['-][a-z]+)*|[,;:?!.()\"/]")
_WORD_AFTER: Final = re.compile(r"\s*([가-힣]+|[a-z]+)")
_CURRENCY_SIGNS: Final = {"$": "dollar", "€": "euro", "£": "pound", "¥": "yen", "₩": "won"}
# Abbreviated units, by the word the embedder and the other spelling use.
_UNIT_WORDS: Final = {
    "km": "kilometer", "kms": "kilometer", "mi": "mile", "m": "meter", "cm": "centimeter", "mm": "millimeter",
    "kg": "kilogram", "g": "gram", "mg": "milligram", "lb": "pound", "lbs": "pound", "oz": "ounce", "ft": "foot",
    "in": "inch", "ml": "milliliter", "l": "liter", "gb": "gigabyte", "mb": "megabyte", "kb": "kilobyte",
    "tb": "terabyte", "h": "hour", "hr": "hour", "hrs": "hour", "min": "minute", "mins": "minute",
    "sec": "second", "secs": "second", "s": "second", "usd": "dollar", "eur": "euro", "krw": "won",
    "jpy": "yen", "gbp": "pound", "won": "won", "kilometre": "kilometer", "metre": "meter", "litre": "liter",
    "centimetre": "centimeter", "millimetre": "millimeter",
}  # fmt: skip
_NOT_UNITS: Final = frozenset({"of", "and", "or", "to", "in", "for", "the", "a", "an", "is", "are", "at", "on", "by"})


def _unit_after(match: re.Match[str], korean: bool) -> str:
    """The unit written with a number: the word right after it, or a currency sign right before it."""
    before = match.string[match.start() - 1] if match.start() else ""
    if before in _CURRENCY_SIGNS:
        return _CURRENCY_SIGNS[before]
    after = _WORD_AFTER.match(match.string, match.end())
    if after is None:
        return ""
    word = after.group(1)
    if korean and "가" <= word[0] <= "힣":
        nouns = [m.form for m in morphemes(word) if m.tag.split("-")[0] in ("NNG", "NNP", "NNB", "SL")]
        return nouns[0] if nouns else ""
    return _unit_word(word)


def _unit_word(word: str) -> str:
    if word in _NOT_UNITS:
        return ""
    if word in _UNIT_WORDS:
        return _UNIT_WORDS[word]
    return lemmas(word)[1]


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


def _code_or_number(match: re.Match[str], codes: list[str], number: Callable[[str, str], None]) -> str | None:
    """A letter-digit token: a number with its unit (5kg, 2nd) is the number and the unit word, else a code."""
    token = match.group(0)
    unit = _NUMBER_WITH_UNIT.fullmatch(token)
    if unit:
        word = token[unit.end(1) :]
        number(unit.group(1), _unit_word(word))
        return word
    codes.append(token.replace("-", "").replace("_", ""))
    return None


# --- dates and times ---------------------------------------------------------------------------------

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
