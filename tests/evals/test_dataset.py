"""The eval JSONL format: what loads, and the line-numbered errors for what does not."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from toolfabric_server.evals.dataset import image_input, load_items
from toolfabric_server.evals.errors import DatasetError


def write(tmp_path: Path, *rows: object) -> Path:
    path = tmp_path / "set.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_items_load_with_images_resolved_beside_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"png")
    path = write(tmp_path, {"id": 1, "question": "Q?", "images": ["a.png", "https://x.org/b.jpg"],
                            "answers": "A", "category": "c", "meta": {"k": 1}}, "",
                 {"id": "two", "question": "Q2", "answers": ["x", "y"]})
    first, second = load_items(path)
    assert first.id == "1" and first.answers == ["A"] and first.category == "c" and first.meta == {"k": 1}
    assert first.images == [str((tmp_path / "a.png").resolve()), "https://x.org/b.jpg"]
    assert second.images == [] and second.category == ""


@pytest.mark.parametrize(("row", "message"), [
    ('{"id": 1, "question": "q"', "set.jsonl:1: not JSON"),
    ({"question": "q", "answers": ["a"]}, "missing required field 'id'"),
    ({"id": 1, "question": " ", "answers": ["a"]}, "'question' must be a non-empty string"),
    ({"id": 1, "question": "q", "answers": []}, "'answers' must be a non-empty list"),
    ({"id": 1, "question": "q", "answers": ["a"], "images": ["missing.png"]}, "image 'missing.png' not found"),
    ({"id": 1, "question": "q", "answers": ["a"], "meta": []}, "'meta' must be an object"),
])
def test_a_bad_line_is_reported_with_its_place_and_field(tmp_path: Path, row: object, message: str) -> None:
    with pytest.raises(DatasetError, match=message.replace("(", r"\(")):
        load_items(write(tmp_path, row))


def test_duplicate_ids_are_refused(tmp_path: Path) -> None:
    row = {"id": "x", "question": "q", "answers": ["a"]}
    with pytest.raises(DatasetError, match=r"set.jsonl:2: duplicate id 'x'"):
        load_items(write(tmp_path, row, row))


def test_images_become_bytes_or_stay_urls(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"abc")
    assert image_input(str(tmp_path / "f.bin")) == b"abc"
    assert image_input("http://x.org/i.png") == "http://x.org/i.png"
    assert image_input("data:image/png;base64," + base64.b64encode(b"xyz").decode()) == b"xyz"
    with pytest.raises(DatasetError, match="not valid base64"):
        image_input("data:image/png;base64,@@@")
