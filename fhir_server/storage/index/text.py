"""Text normalisation shared by string and token indexes: case and accents folded, width folded.

Full-width Latin letters and digits (common in Chinese input) fold to ASCII, so that
``ＡＢＣ１２３`` finds ``abc123``. Chinese characters are kept as they are.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

MAX_LEN = 256


@lru_cache(maxsize=65536)
def normalise(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return folded.casefold().strip()[:MAX_LEN]


def clip(text: str, limit: int = MAX_LEN) -> str:
    """``text`` cut to the width of its index column (PostgreSQL refuses longer values)."""
    return text[:limit]
