"""String normalisation shared by index extraction and query parsing.

search.html says a string search matches case- and accent-insensitively; for Vietnamese that
must also fold ``đ``/``Đ`` (a letter of its own, not ``d`` with a combining mark, so Unicode
decomposition leaves it alone). ``normalise("Nguyễn  Văn Đức")`` is ``"nguyen van duc"``.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

_FOLD = str.maketrans({"đ": "d", "Đ": "d", "ð": "d", "ı": "i", "ø": "o", "Ø": "o", "ł": "l", "Ł": "l"})


@lru_cache(maxsize=65536)
def normalise(text: str) -> str:
    """Case-, accent- and space-insensitive form of ``text`` (NFKD, marks dropped, casefolded)."""
    if text.isascii():
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFKD", text.translate(_FOLD))
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(kept.casefold().split())


@lru_cache(maxsize=65536)
def composed(text: str) -> str:
    """``text`` in NFC: the form ``:exact`` compares, so a name stored decomposed still matches."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)
