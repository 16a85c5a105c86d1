"""The eval dataset format: JSON lines, one question each.

    {"id": "q1", "question": "Who is this?", "images": ["photo.jpg" | "https://…" | "data:image/png;base64,…"],
     "answers": ["Eileen Collins", "Collins"], "category": "people", "meta": {…}}

`id`, `question` and `answers` (a non-empty list of strings) are required; `images` (paths are
relative to the file), `category` and `meta` are optional. Every problem is reported with its line.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolfabric_server.evals.errors import DatasetError


@dataclass
class EvalItem:
    id: str
    question: str
    answers: list[str]
    images: list[str] = field(default_factory=list)
    category: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "question": self.question, "images": self.images,
                               "answers": self.answers}
        if self.category:
            out["category"] = self.category
        if self.meta:
            out["meta"] = self.meta
        return out


def parse_item(raw: Any, where: str) -> EvalItem:
    if not isinstance(raw, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    for key in ("id", "question", "answers"):
        if key not in raw:
            raise DatasetError(f"{where}: missing required field {key!r}")
    if not isinstance(raw["id"], (str, int)) or str(raw["id"]).strip() == "":
        raise DatasetError(f"{where}: 'id' must be a non-empty string")
    if not isinstance(raw["question"], str) or not raw["question"].strip():
        raise DatasetError(f"{where}: 'question' must be a non-empty string")
    answers = raw["answers"]
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, (str, int, float)) for a in answers):
        raise DatasetError(f"{where}: 'answers' must be a non-empty list of strings")
    images = raw.get("images", [])
    if not isinstance(images, list) or not all(isinstance(i, str) and i for i in images):
        raise DatasetError(f"{where}: 'images' must be a list of paths, URLs or data URLs")
    meta = raw.get("meta", {})
    if not isinstance(meta, dict):
        raise DatasetError(f"{where}: 'meta' must be an object")
    return EvalItem(id=str(raw["id"]), question=raw["question"], answers=[str(a) for a in answers], images=images,
                    category=str(raw.get("category") or ""), meta=meta)


def load_items(path: Path) -> list[EvalItem]:
    """Every item of a JSONL dataset; image paths become absolute (relative to the file)."""
    items: list[EvalItem] = []
    seen: set[str] = set()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DatasetError(f"cannot read dataset {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: not JSON ({exc.msg})") from None
        item = parse_item(raw, where)
        if item.id in seen:
            raise DatasetError(f"{where}: duplicate id {item.id!r}")
        seen.add(item.id)
        item.images = [_resolve(image, path.parent, where) for image in item.images]
        items.append(item)
    if not items:
        raise DatasetError(f"{path}: no items")
    return items


def _resolve(image: str, base: Path, where: str) -> str:
    if image.startswith(("http://", "https://", "data:")):
        return image
    resolved = (base / image).resolve()
    if not resolved.is_file():
        raise DatasetError(f"{where}: image {image!r} not found (looked at {resolved})")
    return str(resolved)


def image_input(image: str) -> bytes | str:
    """What the SDK sends: bytes of a file or data URL, or the URL itself (the gateway downloads it)."""
    if image.startswith(("http://", "https://")):
        return image
    if image.startswith("data:"):
        _, sep, payload = image.partition(";base64,")
        if not sep:
            raise DatasetError(f"data URL {image[:40]!r}… is not base64")
        try:
            return base64.b64decode(payload, validate=True)
        except binascii.Error:
            raise DatasetError(f"data URL {image[:40]!r}… is not valid base64") from None
    return Path(image).read_bytes()


def write_items(items: list[EvalItem], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for item in items:
            out.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")
