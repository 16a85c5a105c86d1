"""Converting published benchmark files into the eval JSONL format, images written beside it.

The user downloads the data; each importer reads the rows as published:
- mmsearch      MMSearch end2end (parquet or JSONL rows): sample_id, query, query_image, gt_answer,
                alternative_gt_answers, area / subfield
- fvqa          FVQA as MMSearch-R1 ships it (parquet rows): prompt (chat messages), images,
                reward_model.ground_truth and reward_model.candidate_answers
- browsecomp-vl BrowseComp-VL, WebWatcher's JSONL: prompt, file_path, answers (or answer), level
- simplevqa     SimpleVQA (JSONL or parquet): data_id, question, answer, image (base64, URL or path),
                vqa_category / original_category
- vstar         V* Bench test_questions.jsonl: question_id, image (path), text (with (A)…(D) options),
                label (the letter), category
- mmsearch-plus MMSearch-Plus (Cie1/MMSearch-Plus parquet rows): question and answer (a list) as published,
                XOR-encrypted with the canary "MMSearch-Plus" (decrypted here; plain rows are read as they are),
                img_1 … img_5 (Hugging Face images) with num_images, category, difficulty, subtask
- vdr-bench     VDR-Bench / Vision-DeepResearch parquet rows: question, answer, id (or idx, _id), images
                (paths, bytes or Hugging Face images) or image_packed (JSON [{"filename", "data": base64}]),
                category or data_source
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from toolfabric_server.common import images as image_codec
from toolfabric_server.evals.dataset import EvalItem, write_items
from toolfabric_server.evals.errors import DatasetError

Row = dict[str, Any]


def read_rows(path: Path) -> Iterator[tuple[str, Row]]:
    """(where, row) from a .parquet, .jsonl or .json file."""
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise DatasetError("reading parquet needs pyarrow, a dependency of toolfabric-server: "
                               "pip install pyarrow") from None
        for number, row in enumerate(pq.read_table(path).to_pylist(), start=1):
            yield f"{path} row {number}", row
        return
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
        for number, row in enumerate(data if isinstance(data, list) else [data], start=1):
            yield f"{path} item {number}", row
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                yield f"{path}:{number}", json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path}:{number}: not JSON ({exc.msg})") from None


class _Images:
    """Writes each image once, named by content, into the output's images/ folder."""

    def __init__(self, out_dir: Path, source_dir: Path) -> None:
        self.dir, self.source_dir = out_dir / "images", source_dir

    def save(self, value: Any, where: str) -> str:
        if isinstance(value, dict):  # Hugging Face Image feature: {"bytes": …, "path": …}
            value = value.get("bytes") or value.get("path")
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            return value
        if isinstance(value, str):
            data = self._str_image(value, where)
        elif isinstance(value, (bytes, bytearray)):
            data = bytes(value)
        else:
            raise DatasetError(f"{where}: no image in {type(value).__name__}")
        try:
            info = image_codec.inspect(data, 400_000_000)
        except Exception as exc:
            raise DatasetError(f"{where}: image is not readable ({exc})") from None
        ext = info.mime_type.split("/")[-1].replace("jpeg", "jpg")
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"{hashlib.sha256(data).hexdigest()[:16]}.{ext}"
        (self.dir / name).write_bytes(data)
        return f"images/{name}"

    def _str_image(self, value: str, where: str) -> bytes:
        if value.startswith("data:"):
            value = value.partition(",")[2]
        candidate = self.source_dir / value
        if len(value) < 1024 and candidate.is_file():
            return candidate.read_bytes()
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise DatasetError(f"{where}: image {value[:60]!r} is neither a file beside the data nor base64") from None


def _answers(*values: Any) -> list[str]:
    out: list[str] = []
    for value in values:
        if value is None:
            continue
        for answer in value if isinstance(value, (list, tuple)) else [value]:
            text = str(answer).strip()
            if text and text not in out:
                out.append(text)
    return out


def _need(row: Row, key: str, where: str) -> Any:
    if row.get(key) in (None, ""):
        raise DatasetError(f"{where}: missing {key!r}")
    return row[key]


def mmsearch(rows: Iterable[tuple[str, Row]], images: _Images) -> Iterator[EvalItem]:
    for where, row in rows:
        item_images = [images.save(row["query_image"], where)] if row.get("query_image") else []
        yield EvalItem(id=str(_need(row, "sample_id", where)), question=_need(row, "query", where),
                       answers=_answers(_need(row, "gt_answer", where), row.get("alternative_gt_answers")),
                       images=item_images, category=str(row.get("area") or row.get("subfield") or ""),
                       meta={k: row[k] for k in ("subfield", "timestamp") if row.get(k)})


_IMAGE_TOKEN = re.compile(r"<image>\s*")


def fvqa(rows: Iterable[tuple[str, Row]], images: _Images) -> Iterator[EvalItem]:
    for index, (where, row) in enumerate(rows):
        prompt = _need(row, "prompt", where)
        if isinstance(prompt, list):  # chat messages: the last user turn is the question
            users = [m.get("content", "") for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
            prompt = users[-1] if users else ""
        question = _IMAGE_TOKEN.sub("", str(prompt)).strip()
        if not question:
            raise DatasetError(f"{where}: the prompt has no user question")
        reward = row.get("reward_model") or {}
        answers = _answers(reward.get("ground_truth"), reward.get("candidate_answers"))
        if not answers:
            raise DatasetError(f"{where}: reward_model.ground_truth is missing")
        extra = row.get("extra_info") or {}
        yield EvalItem(id=str(extra.get("index", row.get("id", index))), question=question, answers=answers,
                       images=[images.save(i, where) for i in row.get("images") or []],
                       category=str(row.get("data_source") or ""))


def browsecomp_vl(rows: Iterable[tuple[str, Row]], images: _Images) -> Iterator[EvalItem]:
    for index, (where, row) in enumerate(rows):
        paths = row.get("file_path") or []
        yield EvalItem(id=str(row.get("id", index)), question=_need(row, "prompt", where),
                       answers=_answers(row.get("answers"), row.get("answer")) or _need(row, "answers", where),
                       images=[images.save(p, where) for p in (paths if isinstance(paths, list) else [paths])],
                       category=str(row.get("level") or row.get("category") or ""))


def simplevqa(rows: Iterable[tuple[str, Row]], images: _Images) -> Iterator[EvalItem]:
    for index, (where, row) in enumerate(rows):
        yield EvalItem(id=str(row.get("data_id", index)), question=_need(row, "question", where),
                       answers=_answers(_need(row, "answer", where)),
                       images=[images.save(row["image"], where)] if row.get("image") else [],
                       category=str(row.get("vqa_category") or row.get("original_category") or ""),
                       meta={"language": row["language"]} if row.get("language") else {})


_OPTION = re.compile(r"\(([A-Z])\)\s*([^()\n]+?)(?=\s*\([A-Z]\)|\s*$|\n)")


def vstar(rows: Iterable[tuple[str, Row]], images: _Images) -> Iterator[EvalItem]:
    for index, (where, row) in enumerate(rows):
        text, label = _need(row, "text", where), str(_need(row, "label", where)).strip()
        options = dict(_OPTION.findall(text))
        answers = _answers(label, options.get(label))
        yield EvalItem(id=str(row.get("question_id", index)), question=text, answers=answers,
                       images=[images.save(_need(row, "image", where), where)], category=str(row.get("category") or ""))


MMSEARCH_PLUS_CANARY = "MMSearch-Plus"


def _mmsearch_plus_text(value: Any) -> str:
    """MMSearch-Plus's published text: base64 of UTF-8 XOR a key stream of sha256(canary) repeated."""
    text = str(value)
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return text  # already plain
    key = hashlib.sha256(MMSEARCH_PLUS_CANARY.encode()).digest()
    stream = key * (len(data) // len(key) + 1)
    try:
        return bytes(a ^ b for a, b in zip(data, stream, strict=False)).decode("utf-8")
    except UnicodeDecodeError:
        return text  # plain text that happens to be valid base64


def mmsearch_plus(rows: Iterable[tuple[str, Row]], images: _Images) -> Iterator[EvalItem]:
    for index, (where, row) in enumerate(rows):
        answers = row.get("answer")
        answers = answers if isinstance(answers, (list, tuple)) else [answers]
        decoded = _answers([_mmsearch_plus_text(a) for a in answers if a not in (None, "")])
        if not decoded:
            raise DatasetError(f"{where}: missing 'answer'")
        count = int(row.get("num_images") or 5)
        item_images = [images.save(row[f"img_{i}"], where) for i in range(1, count + 1) if row.get(f"img_{i}")]
        yield EvalItem(id=str(row.get("id", index)), question=_mmsearch_plus_text(_need(row, "question", where)),
                       answers=decoded, images=item_images, category=str(row.get("category") or ""),
                       meta={k: row[k] for k in ("difficulty", "subtask") if row.get(k)})


def vdr_bench(rows: Iterable[tuple[str, Row]], images: _Images) -> Iterator[EvalItem]:
    for index, (where, row) in enumerate(rows):
        found: list[Any] = []
        if row.get("image_packed"):
            try:
                raw = row["image_packed"]
                packed = json.loads(raw) if isinstance(raw, str) else raw
            except ValueError:
                raise DatasetError(f"{where}: image_packed is not JSON") from None
            found = [p.get("data") for p in packed if isinstance(p, dict) and p.get("data")]
        elif row.get("images") is not None:
            raw = row["images"]
            found = [i for i in (raw if isinstance(raw, (list, tuple)) else [raw]) if i is not None]
        tid = next((row[k] for k in ("id", "idx", "_id") if row.get(k) not in (None, "")), index)
        yield EvalItem(id=str(tid), question=str(_need(row, "question", where)).strip(),
                       answers=_answers(_need(row, "answer", where)),
                       images=[images.save(i, where) for i in found],
                       category=str(row.get("category") or row.get("data_source") or ""))


IMPORTERS: dict[str, Callable[[Iterable[tuple[str, Row]], _Images], Iterator[EvalItem]]] = {
    "mmsearch": mmsearch, "fvqa": fvqa, "browsecomp-vl": browsecomp_vl, "simplevqa": simplevqa, "vstar": vstar,
    "mmsearch-plus": mmsearch_plus, "vdr-bench": vdr_bench,
}


def import_dataset(kind: str, source: Path, out: Path, limit: int = 0) -> list[EvalItem]:
    """Convert `source` (a file in `kind`'s published format) into `out` (eval JSONL, images beside it)."""
    if kind not in IMPORTERS:
        raise DatasetError(f"unknown format {kind!r}; one of {sorted(IMPORTERS)}")
    items: list[EvalItem] = []
    for item in IMPORTERS[kind](read_rows(source), _Images(out.parent, source.parent)):
        items.append(item)
        if limit and len(items) >= limit:
            break
    if not items:
        raise DatasetError(f"{source}: no rows")
    write_items(items, out)
    return items
