"""Every tool the fabric offers, gathered from each service's `spec` module (no implementations)."""

from __future__ import annotations

from functools import lru_cache

from services.common.tools import Catalog


@lru_cache(maxsize=1)
def catalog() -> Catalog:
    from services.fetch.spec import TOOLS as FETCH
    from services.search.spec import TOOLS as SEARCH
    from services.vision.spec import TOOLS as VISION

    return Catalog([*VISION, *SEARCH, *FETCH])
