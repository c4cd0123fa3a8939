"""What the guards read a question into, word by word: content words with their role, numbers, dates.

Shared by the Korean and English readers (`guard_korean`, `guard_english`) and the comparison
(`guards`). A role is the part a word plays in its question, read from Korean particles and English
prepositions: who does what (SUBJECT, OBJECT), from where to where (SOURCE, GOAL), compared with what
(THAN), in which unit (IN), and so on. None: the word's role is not marked (a bare noun, a verb).
"""

from dataclasses import dataclass, field
from typing import Final

SUBJECT: Final = "subject"
OBJECT: Final = "object"
TOPIC: Final = "topic"  # 은/는/도/만: the subject or the object, Korean does not say which
COPULA: Final = "copula"  # the noun before 이다 ("몇 마일인가요"): the thing asked for, like a subject
SOURCE: Final = "source"
GOAL: Final = "goal"
THAN: Final = "than"
WITH: Final = "with"
OF: Final = "of"
IN: Final = "in"
BY: Final = "by"  # the agent of an English passive: "chased by the dog"
FOR: Final = "for"
AT: Final = "at"
ABOUT: Final = "about"
BETWEEN: Final = "between"
# Roles that can stand for one another: 은/는 marks a subject or an object, the copula's noun is the
# subject, and a Korean object becomes a subject when its verb becomes a noun ("주소를 변경할 수 있나요" =
# "주소 변경이 가능한가요"). Two words that exchange subject and object still differ (see `guards`).
COMPATIBLE_ROLES: Final = frozenset(
    {
        frozenset({TOPIC, SUBJECT}),
        frozenset({TOPIC, OBJECT}),
        frozenset({COPULA, SUBJECT}),
        frozenset({COPULA, TOPIC}),
        frozenset({SUBJECT, OBJECT}),
    }
)


@dataclass(frozen=True)
class Word:
    """A content word: `keys` decide whether two words are the same (any shared key), `text` is what the
    embedder reads when the guards judge whether two different words are synonyms."""

    keys: frozenset[str]
    text: str
    role: str | None
    position: int  # order in the question (word order matters within an English clause)
    phrase: int  # words of one phrase share it: a Korean noun compound, an English coordination


@dataclass
class WordsRead:
    """What a language reader found in the text left after codes, dates and numbers were taken out."""

    words: list[Word] = field(default_factory=list)
    numbers: list[str] = field(default_factory=list)
    dates: list[str] = field(default_factory=list)
    negations: int = 0
    # Obligations (must, should, have to; -어야 하다/되다), "not-" before those negated (don't have to,
    # shouldn't): "may I?" and "must I?" ask different questions, and so do "need not" and "must".
    obligations: list[str] = field(default_factory=list)
    # Spellings of two or three neighbouring tokens written together ("log in" → "login", "회원 가입" →
    # "회원가입"), mapped to the positions of the words they cover: spacing varies, the word does not.
    joined: dict[str, frozenset[int]] = field(default_factory=dict)


def join_neighbours(tokens: list[tuple[str, int | None]]) -> dict[str, frozenset[int]]:
    """Each run of 2–3 neighbouring tokens written as one word, with the word positions it covers."""
    joined: dict[str, frozenset[int]] = {}
    for start in range(len(tokens)):
        for size in (2, 3):
            run = tokens[start : start + size]
            if len(run) == size:
                joined.setdefault("".join(text for text, _ in run), frozenset(p for _, p in run if p is not None))
    return joined


# Day words of both languages share one label, so "오늘" and "today" are the same date.
DAY_WORDS: Final = {
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
