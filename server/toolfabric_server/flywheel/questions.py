"""Questions over the demo corpus and its photos, several hundred, split into train and held-out BY TOPIC.

Every fact is one the demo pages state (toolfabric/demo/site; `check_facts` proves each answer is on its
page), asked in several phrasings: who/what/when questions whose answer a search + page visit finds, and
visual questions about the shipped photos, some of them made to need a crop or a zoom (the photo small in a
corner of a larger canvas, or a cut-out of it). A topic is a page: all questions about one page go to the
same side, so the held-out set asks about pages the trained model never saw a trajectory of.

The output is eval JSONL (evals/dataset.py) with `category` = the topic and `meta` = kind, fact,
phrasing and image variant; images are written beside it.
"""

from __future__ import annotations

import html
import random
import re
from dataclasses import dataclass
from pathlib import Path

import toolfabric
from toolfabric_server.evals.dataset import EvalItem, write_items
from toolfabric_server.evals.scoring import normalize

SITE = Path(toolfabric.__file__).resolve().parent / "demo" / "site"
# The held-out topics: one mission page, the observatory and one everyday object with a photo.
HELD_OUT = ("sts-63", "chandra", "coffee")


@dataclass(frozen=True)
class Fact:
    topic: str                    # the page (file stem) that states it
    key: str
    answers: tuple[str, ...]      # the first is the reference; every one is on the page
    phrasings: tuple[str, ...]    # "{s}" is the subject: a name, or "the person in this photo" with a photo
    subjects: tuple[str, ...] = ()  # names of the subject in text questions (default: none needed)
    photo: str = ""               # the photo that shows the subject (visual phrasings)
    photo_subject: str = ""       # how a visual question refers to it


COLLINS = ("Eileen Collins", "astronaut Eileen Collins", "Eileen Marie Collins")
FACTS: tuple[Fact, ...] = (
    # eileen-collins
    Fact("eileen-collins", "born-date", ("November 19, 1956", "1956"),
         ("When was {s} born?", "What is the birth date of {s}?", "On what date was {s} born?",
          "In which year was {s} born?"), COLLINS, "astronaut.jpg", "the astronaut in this photo"),
    Fact("eileen-collins", "born-place", ("Elmira, New York", "Elmira"),
         ("Where was {s} born?", "In which town was {s} born?", "What is the birthplace of {s}?"),
         COLLINS, "astronaut.jpg", "the astronaut in this photo"),
    Fact("eileen-collins", "rank", ("colonel",),
         ("What rank did {s} hold in the United States Air Force?", "What was the Air Force rank of {s}?"),
         COLLINS, "astronaut.jpg", "the woman in this photo"),
    Fact("eileen-collins", "who", ("Eileen Collins", "Collins"),
         ("Who is {s}?", "What is the name of {s}?", "Which NASA astronaut is {s}?", "Name {s}."),
         (), "astronaut.jpg", "the person in this photo"),
    Fact("eileen-collins", "first-pilot", ("STS-63",),
         ("On which mission was {s} the first woman to pilot a Space Shuttle?",
          "Which Space Shuttle mission did {s} first pilot?"), COLLINS, "astronaut.jpg", "the astronaut in this photo"),
    Fact("eileen-collins", "first-command", ("STS-93",),
         ("What was the first Space Shuttle mission {s} commanded?", "Which mission made {s} the first woman to "
          "command a Space Shuttle mission?"), COLLINS, "astronaut.jpg", "the astronaut in this photo"),
    Fact("eileen-collins", "return-to-flight", ("STS-114",),
         ("Which Return to Flight mission did {s} command in 2005?",
          "What mission did {s} command after the loss of Columbia?"), COLLINS),
    Fact("eileen-collins", "sts-84-role", ("pilot",),
         ("What was the role of {s} on STS-84?", "Did {s} fly STS-84 as pilot or commander?"), COLLINS),
    # sts-63
    Fact("sts-63", "launch", ("February 3, 1995",),
         ("When was {s} launched?", "On what date did {s} launch?", "What was the launch date of {s}?"),
         ("STS-63", "the Near-Mir mission", "the STS-63 mission")),
    Fact("sts-63", "orbiter", ("Discovery",),
         ("Which orbiter flew {s}?", "Which Space Shuttle flew {s}?", "Name the orbiter of {s}."),
         ("STS-63", "the Near-Mir mission")),
    Fact("sts-63", "station", ("Mir",),
         ("Which space station did {s} rendezvous with?", "What Russian space station did {s} approach?"),
         ("STS-63", "the STS-63 mission")),
    Fact("sts-63", "distance", ("11 metres", "about 11 metres"),
         ("How close did Discovery come to Mir on {s}?", "Within how many metres of Mir did Discovery fly on {s}?"),
         ("STS-63", "the Near-Mir mission")),
    Fact("sts-63", "commander", ("James Wetherbee", "Wetherbee"),
         ("Who was the commander of {s}?", "Who commanded {s}?"), ("STS-63", "the Near-Mir mission")),
    Fact("sts-63", "pilot", ("Eileen Collins", "Collins"),
         ("Who was the pilot of {s}?", "Who flew {s} as pilot?"), ("STS-63", "the Near-Mir mission")),
    # sts-93
    Fact("sts-93", "launch", ("July 23, 1999",),
         ("When was {s} launched?", "On what date did {s} launch?", "What was the launch date of {s}?"),
         ("STS-93", "the STS-93 mission")),
    Fact("sts-93", "landing", ("July 27, 1999",),
         ("When did {s} land?", "On what date did {s} land?"), ("STS-93", "the STS-93 mission")),
    Fact("sts-93", "orbiter", ("Columbia",),
         ("Which orbiter flew {s}?", "Which Space Shuttle flew {s}?"), ("STS-93", "the STS-93 mission")),
    Fact("sts-93", "pilot", ("Jeffrey Ashby", "Ashby"),
         ("Who was the pilot of {s}?", "Who flew {s} as pilot?"), ("STS-93", "the STS-93 mission")),
    Fact("sts-93", "french", ("Michel Tognini", "Tognini"),
         ("Which mission specialist of {s} was from France?", "Who was the French crew member of {s}?"),
         ("STS-93", "the STS-93 mission")),
    Fact("sts-93", "site", ("Kennedy Space Center",),
         ("From where was {s} launched?", "Which launch site did {s} leave from?"), ("STS-93", "the STS-93 mission")),
    Fact("sts-93", "upper-stage", ("Inertial Upper Stage",),
         ("What boosted the payload of {s} to its high orbit?", "Which stage raised the orbit of the {s} payload?"),
         ("STS-93", "the STS-93 mission")),
    # chandra
    Fact("chandra", "named", ("Subrahmanyan Chandrasekhar", "Chandrasekhar"),
         ("Who is {s} named after?", "After which astrophysicist is {s} named?"),
         ("the Chandra X-ray Observatory", "Chandra", "the Chandra telescope")),
    Fact("chandra", "observes", ("X-rays",),
         ("What kind of light does {s} observe?", "What radiation does {s} detect?"),
         ("the Chandra X-ray Observatory", "the Chandra telescope")),
    Fact("chandra", "mission", ("STS-93",),
         ("On which Space Shuttle mission was {s} launched?", "Which mission deployed {s}?"),
         ("the Chandra X-ray Observatory", "Chandra")),
    Fact("chandra", "launch", ("July 1999",),
         ("When was {s} launched?", "In which month and year was {s} launched?"),
         ("the Chandra X-ray Observatory", "the Chandra telescope")),
    # space-shuttle
    Fact("space-shuttle", "years", ("1981 to 2011",),
         ("During which years did NASA operate {s}?", "From when to when did {s} fly?"),
         ("the Space Shuttle", "the Space Shuttle program")),
    Fact("space-shuttle", "orbiters", ("Five",),
         ("How many orbiters flew in {s}?", "How many Space Shuttle orbiters flew in {s}?"),
         ("the Space Shuttle program",)),
    Fact("space-shuttle", "sally-ride", ("Sally Ride",),
         ("Who was the first American woman in space, according to {s} history?",
          "Which astronaut of {s} was the first American woman in space?"), ("the Space Shuttle",)),
    Fact("space-shuttle", "sally-ride-mission", ("STS-7",),
         ("On which mission did Sally Ride become the first American woman in space with {s}?",
          "Which {s} mission carried Sally Ride?"), ("the Space Shuttle",)),
    Fact("space-shuttle", "launch-site", ("Cape Canaveral",),
         ("From where is {s} launching?", "Where was the launch in {s} taken?"), (), "rocket.jpg",
         "the spacecraft in this photo"),
    Fact("space-shuttle", "vehicle", ("Space Shuttle",),
         ("What spacecraft is {s}?", "Which NASA spacecraft is {s}?"), (), "rocket.jpg", "the launch in this photo"),
    # coffee
    Fact("coffee", "beans", ("roasted coffee beans", "coffee beans"),
         ("What is {s} brewed from?", "From what is {s} brewed?"), ("coffee",), "coffee.jpg",
         "the drink in this photo"),
    Fact("coffee", "espresso", ("forcing hot water through finely ground coffee", "hot water"),
         ("How is {s} made?", "What is forced through finely ground coffee to make {s}?"), ("an espresso",)),
    Fact("coffee", "drink", ("coffee",),
         ("What drink is {s}?", "What is the drink in {s}?"), (), "coffee.jpg", "the cup in this photo"),
    Fact("coffee", "cup", ("white",),
         ("What colour is {s}?", "Of what colour is {s}?"), (), "coffee.jpg", "the cup in this photo"),
    # chelsea
    Fact("chelsea", "breed", ("tabby", "tabby cat"),
         ("What kind of cat is {s}?", "What type of cat is {s}?"), ("Chelsea", "Chelsea the cat"), "chelsea.jpg",
         "the cat in this photo"),
    Fact("chelsea", "name", ("Chelsea",),
         ("What is the name of {s}?", "What is {s} called?", "Which cat is {s}?"), (), "chelsea.jpg",
         "the cat in this photo"),
    Fact("chelsea", "known-for", ("classic test image", "test image"),
         ("Why is the photograph of {s} well known?", "What is the photograph of {s} used as?"),
         ("Chelsea", "Chelsea the cat")),
)

# How a photo is shown: as shipped, recompressed small, in a corner of a larger canvas (needs a crop and a
# zoom), greyscale, or a cut-out of its centre.
VARIANTS = ("photo", "small", "corner", "grey", "centre")


def page_text(topic: str) -> str:
    raw = (SITE / f"{topic}.html").read_text(encoding="utf-8")
    raw = re.sub(r"<(script|style)\b.*?</\1>", " ", raw, flags=re.S)
    return html.unescape(re.sub(r"<[^>]+>", " ", raw))


def check_facts() -> list[str]:
    """Every answer that its page does not state (normalised); empty when the table is true to the corpus."""
    missing = []
    for fact in FACTS:
        text = f" {normalize(page_text(fact.topic))} "
        missing += [f"{fact.topic}/{fact.key}: {a!r}" for a in fact.answers if f" {normalize(a)} " not in text]
    return missing


def _variant(photo: str, variant: str, out: Path) -> str:
    """Writes the variant of a shipped photo into `out`; returns its file name."""
    from PIL import Image, ImageOps

    name = f"{Path(photo).stem}-{variant}.jpg"
    target = out / name
    if target.exists():
        return name
    image = Image.open(SITE / photo).convert("RGB")
    w, h = image.size
    if variant == "small":
        image = image.resize((max(32, w * 2 // 5), max(32, h * 2 // 5)), Image.Resampling.LANCZOS)
    elif variant == "corner":
        # The photo at a third of its size in the lower-right corner of a grey canvas: a model has to find it,
        # crop it and zoom in before an image search can match it.
        canvas = Image.new("RGB", (w, h), (118, 121, 125))
        small = image.resize((w // 3, h // 3), Image.Resampling.LANCZOS)
        canvas.paste(small, (w - small.width - w // 20, h - small.height - h // 20))
        image = canvas
    elif variant == "grey":
        image = ImageOps.grayscale(image).convert("RGB")
    elif variant == "centre":
        image = image.crop((w // 8, h // 8, w - w // 8, h - h // 8))
    image.save(target, "JPEG", quality=82)
    return name


def generate(out_dir: Path, seed: int = 0) -> tuple[list[EvalItem], list[EvalItem]]:
    """(train, held-out) items written to out_dir/train.jsonl and out_dir/heldout.jsonl, images in out_dir/images."""
    images = out_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    items: list[EvalItem] = []
    for fact in FACTS:
        for p, phrasing in enumerate(fact.phrasings):
            for s, subject in enumerate(fact.subjects):
                items.append(EvalItem(
                    id=f"{fact.topic}/{fact.key}/t{p}{s}", question=phrasing.format(s=subject),
                    answers=list(fact.answers), category=fact.topic,
                    meta={"kind": "text", "fact": fact.key, "phrasing": p}))
            if fact.photo:
                for variant in VARIANTS:
                    name = _variant(fact.photo, variant, images)
                    items.append(EvalItem(
                        id=f"{fact.topic}/{fact.key}/v{p}-{variant}", question=phrasing.format(s=fact.photo_subject),
                        answers=list(fact.answers), images=[f"images/{name}"], category=fact.topic,
                        meta={"kind": "visual", "fact": fact.key, "phrasing": p, "variant": variant,
                              "needs": "crop+zoom" if variant == "corner" else "look"}))
    random.Random(seed).shuffle(items)
    train = [i for i in items if i.category not in HELD_OUT]
    held = [i for i in items if i.category in HELD_OUT]
    write_items(train, out_dir / "train.jsonl")
    write_items(held, out_dir / "heldout.jsonl")
    return train, held
