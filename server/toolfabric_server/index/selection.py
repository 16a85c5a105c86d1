"""Which files of a folder (or pages of a crawled site) are indexed: include/exclude globs.

A pattern matches a path relative to the folder, or any tail of it that starts at a folder
boundary, so `_sources/*` also leaves out `docs/_sources/x.txt` and `.*` any hidden file or folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase


def _tails(path: str) -> list[str]:
    parts = path.strip("/").split("/")
    return ["/".join(parts[i:]) for i in range(len(parts))]


@dataclass(frozen=True)
class Selection:
    include: list[str] = field(default_factory=list)  # empty: every readable file
    exclude: list[str] = field(default_factory=list)

    def excluded_by(self, path: str) -> str | None:
        """The pattern that leaves `path` out, or None when it is indexed."""
        tails = _tails(path)
        for pattern in self.exclude:
            if any(fnmatchcase(t, pattern) for t in tails):
                return pattern
        if self.include and not any(fnmatchcase(t, p) for p in self.include for t in tails):
            return "not in --include"
        return None
