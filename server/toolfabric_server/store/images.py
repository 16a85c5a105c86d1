"""Images by content: `<root>/ab/cdef…` named by the sha256 of the bytes, written once, atomically.

The directory is a volume in production; any S3-compatible backend can stand behind the same three
methods (put, get, delete).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from toolfabric_server.common.blobs import PREFIX, ref_for
from toolfabric_server.store.errors import ImageNotInStore


class ImageFiles:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, ref: str) -> Path:
        digest = ref[len(PREFIX):] if ref.startswith(PREFIX) else ""
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ImageNotInStore(f"{ref!r} is not an image reference (expected sha256:<64 hex>)")
        return self.root / digest[:2] / digest[2:]

    def put(self, data: bytes) -> str:
        ref = ref_for(data)
        target = self.path(ref)
        if not target.exists():
            target.parent.mkdir(exist_ok=True)
            # Write beside and rename: a reader never sees half a file, two writers of the same bytes agree.
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, target)
        return ref

    def exists(self, ref: str) -> bool:
        return self.path(ref).exists()

    def get(self, ref: str) -> bytes:
        try:
            return self.path(ref).read_bytes()
        except FileNotFoundError:
            raise ImageNotInStore(f"image {ref} is not in the store") from None

    def delete(self, ref: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(ref).unlink()
