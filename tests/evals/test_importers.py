"""Importers from the published formats, on tiny hand-made files in each format."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from toolfabric_server.evals.dataset import load_items
from toolfabric_server.evals.errors import DatasetError
from toolfabric_server.evals.importers import import_dataset


def jpeg(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (12, 10), color).save(out, "JPEG")
    return out.getvalue()


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_mmsearch_end2end_parquet(tmp_path: Path) -> None:
    rows = [{"sample_id": "news_0", "query": "Who won?", "query_image": {"bytes": jpeg((255, 0, 0)), "path": None},
             "gt_answer": "Alice", "alternative_gt_answers": ["A. Smith"], "area": "news", "subfield": "sports"},
            {"sample_id": "news_1", "query": "When?", "query_image": None, "gt_answer": "1999",
             "alternative_gt_answers": [], "area": "knowledge", "subfield": "history"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "end2end.parquet")
    out = tmp_path / "out" / "mmsearch.jsonl"
    import_dataset("mmsearch", tmp_path / "end2end.parquet", out)
    first, second = load_items(out)
    assert (first.id, first.question, first.answers, first.category) == ("news_0", "Who won?", ["Alice", "A. Smith"],
                                                                         "news")
    assert Path(first.images[0]).read_bytes() == rows[0]["query_image"]["bytes"]
    assert second.images == [] and second.answers == ["1999"] and second.meta == {"subfield": "history"}


def test_fvqa_rows_as_mmsearch_r1_ships_them(tmp_path: Path) -> None:
    rows = [{"data_source": "fvqa", "prompt": [{"role": "system", "content": "You are..."},
                                                {"role": "user", "content": "<image>\nWhat bird is this?"}],
             "images": [{"bytes": jpeg((0, 255, 0))}],
             "reward_model": {"ground_truth": "robin", "candidate_answers": ["robin", "European robin"]},
             "extra_info": {"index": 7}}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "fvqa_test.parquet")
    out = tmp_path / "fvqa.jsonl"
    (item,) = import_dataset("fvqa", tmp_path / "fvqa_test.parquet", out)
    assert (item.id, item.question, item.answers) == ("7", "What bird is this?", ["robin", "European robin"])
    assert item.category == "fvqa" and len(load_items(out)[0].images) == 1


def test_browsecomp_vl_webwatcher_jsonl(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "q1.jpg").write_bytes(jpeg((0, 0, 255)))
    src = jsonl(tmp_path / "bc.jsonl", [{"prompt": "Which museum holds this?", "file_path": "imgs/q1.jpg",
                                         "answers": ["Louvre"], "level": "level1"}])
    (item,) = import_dataset("browsecomp-vl", src, tmp_path / "out.jsonl")
    assert (item.id, item.answers, item.category) == ("0", ["Louvre"], "level1")
    assert load_items(tmp_path / "out.jsonl")[0].images[0].endswith(".jpg")


def test_simplevqa_with_base64_images(tmp_path: Path) -> None:
    src = jsonl(tmp_path / "svqa.jsonl", [{"data_id": 3, "question": "What is this?", "answer": "a cat",
                                           "image": base64.b64encode(jpeg((9, 9, 9))).decode(),
                                           "vqa_category": "animals", "language": "EN"}])
    (item,) = import_dataset("simplevqa", src, tmp_path / "out.jsonl")
    assert (item.id, item.answers, item.category, item.meta) == ("3", ["a cat"], "animals", {"language": "EN"})


def test_vstar_answers_are_the_letter_and_its_option(tmp_path: Path) -> None:
    (tmp_path / "direct_attributes").mkdir()
    (tmp_path / "direct_attributes" / "sa_1.jpg").write_bytes(jpeg((1, 2, 3)))
    text = "What is the color of the umbrella?\n(A) red\n(B) blue\nAnswer with the option's letter."
    src = jsonl(tmp_path / "test_questions.jsonl", [{"image": "direct_attributes/sa_1.jpg", "text": text,
                                                     "category": "direct_attributes", "question_id": 0,
                                                     "label": "B"}])
    (item,) = import_dataset("vstar", src, tmp_path / "out.jsonl")
    assert item.answers == ["B", "blue"] and item.category == "direct_attributes"


def test_a_row_missing_its_answer_names_the_row(tmp_path: Path) -> None:
    src = jsonl(tmp_path / "svqa.jsonl", [{"data_id": 1, "question": "q"}])
    with pytest.raises(DatasetError, match=r"svqa.jsonl:1: missing 'answer'"):
        import_dataset("simplevqa", src, tmp_path / "out.jsonl")


def test_an_image_that_is_neither_file_nor_base64_is_refused(tmp_path: Path) -> None:
    src = jsonl(tmp_path / "bc.jsonl", [{"prompt": "q", "file_path": "nowhere.jpg", "answers": ["a"]}])
    with pytest.raises(DatasetError, match="neither a file beside the data nor base64"):
        import_dataset("browsecomp-vl", src, tmp_path / "out.jsonl")


def _mmsearch_plus_encrypt(text: str) -> str:
    """As MMSearch-Plus publishes its text: UTF-8 XOR sha256("MMSearch-Plus") repeated, base64."""
    import hashlib

    data = text.encode()
    key = hashlib.sha256(b"MMSearch-Plus").digest() * (len(data) // 32 + 1)
    return base64.b64encode(bytes(a ^ b for a, b in zip(data, key))).decode()


def test_mmsearch_plus_parquet_is_decrypted_with_its_canary(tmp_path: Path) -> None:
    rows = [{"question": _mmsearch_plus_encrypt("Which café is shown in the second frame?"),
             "answer": [_mmsearch_plus_encrypt("Café de Flore"), _mmsearch_plus_encrypt("de Flore")],
             "num_images": 2, "img_1": {"bytes": jpeg((0, 0, 255)), "path": None},
             "img_2": {"bytes": jpeg((0, 255, 0)), "path": None}, "img_3": None, "img_4": None, "img_5": None,
             "category": "geo", "difficulty": "hard", "subtask": "place", "video_url": "", "arxiv_id": ""},
            {"question": "Already plain?", "answer": ["yes"], "num_images": 0, "img_1": None, "img_2": None,
             "img_3": None, "img_4": None, "img_5": None, "category": "misc", "difficulty": "easy",
             "subtask": "", "video_url": "", "arxiv_id": ""}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "mmsearch_plus.parquet")
    out = tmp_path / "out" / "plus.jsonl"
    import_dataset("mmsearch-plus", tmp_path / "mmsearch_plus.parquet", out)
    first, second = load_items(out)
    assert (first.id, first.question, first.answers) == ("0", "Which café is shown in the second frame?",
                                                         ["Café de Flore", "de Flore"])
    assert len(first.images) == 2 and first.category == "geo" and first.meta == {"difficulty": "hard",
                                                                                 "subtask": "place"}
    assert (second.question, second.answers, second.images) == ("Already plain?", ["yes"], [])


def test_vdr_bench_parquet_with_packed_or_listed_images(tmp_path: Path) -> None:
    packed = json.dumps([{"filename": "crop.jpg", "data": base64.b64encode(jpeg((9, 9, 9))).decode()}])
    rows = [{"id": "vdr-1", "question": "Who designed the building in crop.jpg?", "answer": "Zaha Hadid",
             "image_packed": packed, "images": None, "data_source": "vdr"},
            {"id": None, "question": "What year?", "answer": "1931", "image_packed": None,
             "images": [{"bytes": jpeg((1, 2, 3)), "path": None}], "data_source": "vdr"}]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "vdr.parquet")
    out = tmp_path / "out" / "vdr.jsonl"
    import_dataset("vdr-bench", tmp_path / "vdr.parquet", out)
    first, second = load_items(out)
    assert (first.id, first.answers, first.category, len(first.images)) == ("vdr-1", ["Zaha Hadid"], "vdr", 1)
    assert (second.id, second.answers, len(second.images)) == ("1", ["1931"], 1)
    pq.write_table(pa.Table.from_pylist([{"question": "No answer?", "answer": ""}]), tmp_path / "bad.parquet")
    with pytest.raises(DatasetError, match=r"bad\.parquet row 1: missing 'answer'"):
        import_dataset("vdr-bench", tmp_path / "bad.parquet", tmp_path / "out" / "bad.jsonl")
