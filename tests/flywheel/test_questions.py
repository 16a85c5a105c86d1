"""The flywheel's question set: true to the demo corpus, several hundred, split by topic."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from PIL import Image

from toolfabric_server.evals.dataset import load_items
from toolfabric_server.flywheel.questions import FACTS, HELD_OUT, check_facts, generate


def test_every_answer_is_stated_on_its_page() -> None:
    assert check_facts() == []


def test_several_hundred_questions_split_by_topic_with_images_that_load(tmp_path: Path) -> None:
    train, held = generate(tmp_path)
    assert len(train) + len(held) >= 300 and len(held) >= 60
    assert {i.category for i in held} == set(HELD_OUT)
    assert not {i.category for i in train} & set(HELD_OUT)  # no held-out topic leaks into training
    # Both kinds on both sides, and some visual questions need a crop and a zoom.
    for side in (train, held):
        assert {i.meta["kind"] for i in side} == {"text", "visual"}
    assert Counter(i.meta.get("needs") for i in train + held)["crop+zoom"] >= 20
    # The files are eval datasets as `toolfabric eval run` reads them.
    assert [i.id for i in load_items(tmp_path / "train.jsonl")] == [i.id for i in train]
    for item in load_items(tmp_path / "heldout.jsonl"):
        for image in item.images:
            with Image.open(image) as img:
                assert img.width >= 32 and img.height >= 32
    corner = Image.open(tmp_path / "images" / "astronaut-corner.jpg")
    photo = Image.open(Path(__file__).resolve().parents[2] / "toolfabric" / "demo" / "site" / "astronaut.jpg")
    assert corner.size == photo.size  # the photo is a third of the canvas: finding it takes a crop and a zoom


def test_same_seed_same_questions(tmp_path: Path) -> None:
    a, _ = generate(tmp_path / "a", seed=3)
    b, _ = generate(tmp_path / "b", seed=3)
    assert [i.to_json() for i in a] == [i.to_json() for i in b]
    assert len({f.topic for f in FACTS}) == 7
