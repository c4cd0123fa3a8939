"""Korean read by Kiwi (kiwipiepy): morphemes with their part of speech and lemma, whatever the spacing.

`morphemes(text)` returns Kiwi's analysis of `text` as `Morpheme`s (form, Sejong tag, lemma, offsets).
Kiwi is loaded on the first call, once per process: only the semantic cache's guards call it, and
only for a Korean question whose nearest stored question cleared the similarity threshold, so no
other request pays for it (import cost: none; load: about 2 s of CPU and ~200 MB of memory).

Which Kiwi: kiwipiepy 0.24.1 with the CoNg model of kiwipiepy-model 0.24.0, without its optional
dictionaries (the Wikipedia/Namuwiki proper nouns, WikiData multi-word names, typo and dialect
dictionaries) and with rule-based handling of unknown nouns instead of the character-level noun
model: the Lambda layer ships only the files this configuration reads (cong.mdl, sj.morph,
extract.mdl, combiningRule.txt: 84 MB of the package's 109; layers/guards/Makefile,
docs/decisions.md), and every other environment loads the same configuration, so the guards read
Korean alike everywhere.
"""

import threading
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from costgate.errors import ConfigurationError

__all__ = ["KIWI_VERSION", "Morpheme", "morphemes"]

KIWI_VERSION: Final = "0.24.1"
KIWI_MODEL_VERSION: Final = "0.24.0"
# The configuration every environment loads (the layer ships only the files it needs).
KIWI_OPTIONS: Final[dict[str, Any]] = {
    "model_type": "cong",
    "load_default_dict": False,
    "load_typo_dict": False,
    "load_multi_dict": False,
    "num_workers": 0,  # one text at a time, in the caller's thread
}
# Unknown nouns by Kiwi's rules, not its character-level noun model (nounchr.mdl, 9.7 MB, not shipped).
TOKENIZE_OPTIONS: Final[dict[str, Any]] = {"oov_handling": "rule"}


@dataclass(frozen=True)
class Morpheme:
    form: str
    tag: str  # Sejong tag as Kiwi writes it (NNG, VV, JKO, ...; irregular verbs carry a suffix: VA-I)
    lemma: str  # the dictionary form of a verb or adjective stem (크 → 크다), else the form
    start: int
    end: int


_lock = threading.Lock()
_kiwi: Any = None


def morphemes(text: str) -> tuple[Morpheme, ...]:
    """Kiwi's best analysis of `text` (one line of Korean, possibly mixed with Latin and digits)."""
    return _analysed(text)


@lru_cache(maxsize=16384)
def _analysed(text: str) -> tuple[Morpheme, ...]:
    kiwi = _kiwi if _kiwi is not None else _load()
    with _lock:
        tokens = kiwi.tokenize(text, **TOKENIZE_OPTIONS)
    return tuple(
        Morpheme(form=t.form, tag=t.tag, lemma=t.lemma or t.form, start=t.start, end=t.start + t.len) for t in tokens
    )


def _load() -> Any:
    global _kiwi  # noqa: PLW0603 - one analyzer per process, created on first use
    with _lock:
        if _kiwi is not None:
            return _kiwi
        try:
            import kiwipiepy  # type: ignore[import-untyped]  # noqa: PLC0415 - loaded on first use only
        except ImportError as error:
            raise ConfigurationError(
                f"the semantic cache's Korean guards need kiwipiepy=={KIWI_VERSION} with kiwipiepy-model=="
                f"{KIWI_MODEL_VERSION} (the Kiwi layer): {error}"
            ) from None
        if kiwipiepy.__version__ != KIWI_VERSION:
            raise ConfigurationError(
                f"kiwipiepy {kiwipiepy.__version__} is installed, but the guards and their calibrated "
                f"thresholds are for {KIWI_VERSION}"
            )
        with warnings.catch_warnings():
            # num_workers=0 warns that its meaning changed in 0.21 (it now means one thread, as wanted).
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                kiwi = kiwipiepy.Kiwi(**KIWI_OPTIONS)
                kiwi.tokenize("", **TOKENIZE_OPTIONS)  # Kiwi finishes loading on its first analysis: pay here
            except Exception as error:  # noqa: BLE001 - Kiwi raises a bare Exception for a missing model file
                raise ConfigurationError(f"Kiwi could not load its model: {error}") from None
        _kiwi = kiwi
        return kiwi
