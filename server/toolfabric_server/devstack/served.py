"""What `toolfabric up` tells the user about the index it serves, and which command to try first."""

from __future__ import annotations

from pathlib import Path

from toolfabric.cli.main import DEMO_IMAGE, DEMO_QUESTION
from toolfabric_server.common.settings import CommonSettings


def describe_index(common: CommonSettings, data_dir: Path) -> tuple[int, str]:
    """(pages, a line naming the index and what it holds) for the index the workers will open."""
    from toolfabric_server.index import INDEX_FILE, open_index

    index = open_index(common, data_dir=str(data_dir))
    try:
        counts = index.counts()
    finally:
        index.close()
    where = (f"Elasticsearch {common.elasticsearch_url} (prefix {common.elasticsearch_prefix})"
             if common.elasticsearch_url else str(data_dir / INDEX_FILE))
    line = f"{where}: {counts['pages']} pages, {counts['images']} images"
    if not counts["pages"]:
        line += " (empty: text_search finds nothing until you run `toolfabric index DIR --base-url URL`)"
    return counts["pages"], line


def suggestion(target: str, *, demo: bool, pages: int) -> str:
    if demo:
        return f'toolfabric run --target {target} "{DEMO_QUESTION}" --image {DEMO_IMAGE}'
    if not pages:
        return ("toolfabric index DIR --base-url URL   (then) "
                f'toolfabric run --target {target} "a question your pages answer"')
    return f'toolfabric run --target {target} "a question your pages answer" [--image PHOTO]'
