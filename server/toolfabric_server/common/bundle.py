"""A frozen set of provider responses: a content-addressed folder an eval reruns from, fully offline.

    BUNDLE/bundle.json           {"format": "toolfabric-bundle/1", "entries": {request key: {"object", "what"}},
                                  "judge": {"name": judge, "replies": {judge key: object}}, "source": …}
           objects/<sha256>.json one provider response each (a cache entry: value, provider, fetched_at, cost_units),
                                 or a judge reply; named by the sha256 of its bytes

Request keys name what was asked, not who answered or when (`search.web:<sha256 of the normalised query>`,
`web_visit:<sha256 of the URL>`, `search.image:<sha256 of the image content>`), so a bundle answers a stack
with other providers or another local index, and published caches import into the same form. The bundle's
hash is the sha256 of bundle.json's canonical bytes: two bundles with the same hash hold the same answers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

FORMAT = "toolfabric-bundle/1"
INDEX = "bundle.json"


class BundleError(ValueError):
    """A folder that is not a readable bundle (names the file and what is wrong)."""


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


class Bundle:
    """Reads a bundle; `get(request_key)` is the recorded cache entry (a dict) or None."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        index_file = self.path / INDEX
        try:
            raw = index_file.read_bytes()
            index = json.loads(raw)
        except OSError as exc:
            raise BundleError(f"{index_file}: cannot read the bundle ({exc.strerror or exc})") from None
        except ValueError as exc:
            raise BundleError(f"{index_file}: not JSON ({exc})") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT:
            raise BundleError(f"{index_file}: not a {FORMAT} bundle")
        self.index = index
        self.hash = "sha256:" + hashlib.sha256(_canonical(index)).hexdigest()
        self.entries: dict[str, dict[str, str]] = dict(index.get("entries") or {})
        judge = index.get("judge") or {}
        self.judge_name: str = str(judge.get("name") or "")
        self.judge_replies: dict[str, str] = dict(judge.get("replies") or {})

    def _object(self, digest: str) -> Any:
        path = self.path / "objects" / f"{digest}.json"
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BundleError(f"{path}: missing from the bundle ({exc.strerror or exc})") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise BundleError(f"{path}: its content does not match its name (the bundle was changed)")
        return json.loads(data)

    def get(self, request_key: str) -> dict[str, Any] | None:
        found = self.entries.get(request_key)
        return None if found is None else dict(self._object(found["object"]))

    def judge_reply(self, key: str) -> str | None:
        found = self.judge_replies.get(key)
        return None if found is None else str(self._object(found))

    def described(self, prefix: str) -> list[str]:
        """What the entries under a namespace were asked ("web_visit https://…"), for policies and listings."""
        return [e.get("what", "") for k, e in sorted(self.entries.items()) if k.startswith(prefix + ":")]


class BundleWriter:
    """Writes a bundle: add entries and judge replies, then `finish()` returns its hash."""

    def __init__(self, path: Path, source: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        (self.path / "objects").mkdir(parents=True, exist_ok=True)
        self._entries: dict[str, dict[str, str]] = {}
        self._judge: dict[str, str] = {}
        self._judge_name = ""
        self._source = source or {}

    def _put(self, value: Any) -> str:
        data = _canonical(value)
        digest = hashlib.sha256(data).hexdigest()
        target = self.path / "objects" / f"{digest}.json"
        if not target.exists():
            target.write_bytes(data)
        return digest

    def add(self, request_key: str, entry: dict[str, Any], what: str = "") -> None:
        self._entries[request_key] = {"object": self._put(entry), "what": what}

    def add_judge(self, name: str, key: str, reply: str) -> None:
        self._judge_name = name
        self._judge[key] = self._put(reply)

    def __len__(self) -> int:
        return len(self._entries)

    def finish(self) -> str:
        index: dict[str, Any] = {"format": FORMAT, "entries": dict(sorted(self._entries.items())),
                                 "source": self._source}
        if self._judge:
            index["judge"] = {"name": self._judge_name, "replies": dict(sorted(self._judge.items()))}
        (self.path / INDEX).write_bytes(_canonical(index))
        return "sha256:" + hashlib.sha256(_canonical(index)).hexdigest()


def open_bundle(path: str) -> Bundle | None:
    """The bundle a setting names (TOOLFABRIC_CACHE_BUNDLE), or None when it names none."""
    return Bundle(Path(path)) if path else None
