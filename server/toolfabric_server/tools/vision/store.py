"""The trajectory's images as vision tools use them, and the images they produce.

Blobs are content-addressed, so a decoded array or a converted PNG cached by blob reference can
never go stale: a worker process keeps the most recent ones (bounded by bytes), which saves the
decode when a trajectory works on the same photo call after call. An erased image (a deleted
trajectory's) is dropped from that memory as soon as its erasure is announced (blobs.follow_erasures).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from toolfabric_server.common import images, redis_clients
from toolfabric_server.common.blobs import BlobStore, follow_erasures
from toolfabric_server.common.errors import BlobNotFound, InvalidImage, UnknownImage
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.common.tools import NewImage, ToolContext, canonical_image_name, resolve_image
from toolfabric_server.tools.vision.errors import BadImageInput
from toolfabric_server.tools.vision.settings import VisionSettings


class _LRU:
    """Least-recently-used values bounded by their total size in bytes; thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self._max = max_bytes
        self._items: OrderedDict[tuple[str, str], tuple[Any, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> Any:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def drop(self, ref: str) -> None:
        """Forgets everything kept of blob `ref` (an erased image must not live on in a worker's memory)."""
        with self._lock:
            for key in [k for k in self._items if k[1] == ref]:
                self._size -= self._items.pop(key)[1]

    def put(self, key: tuple[str, str], value: Any, size: int) -> None:
        if size > self._max // 4:
            return  # one huge image must not evict everything else
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (value, size)
            self._size += size
            while self._size > self._max:
                _, (_, evicted) = self._items.popitem(last=False)
                self._size -= evicted


def _name_order(name: str) -> tuple[int, int]:
    kind, _, number = name.strip("<>").rpartition(" ")
    return (0 if kind == "image" else 1, int(number) if number.isdigit() else 0)


class ImageStore:
    def __init__(self, blobs: BlobStore, max_pixels: int, max_bytes: int, cache_bytes: int,
                 png_compression: int = 1, max_pixels_per_byte: int = images.PIXELS_PER_BYTE) -> None:
        self._blobs = blobs
        self._max_pixels = max_pixels
        self._density = max_pixels_per_byte
        self.max_bytes = max_bytes
        self._png_compression = png_compression
        self._cache = _LRU(cache_bytes)

    def forget(self, ref: str) -> None:
        """Drops the decoded pixels and PNG kept of an erased image (gateway/erasure.py announces them)."""
        self._cache.drop(ref)

    @staticmethod
    def trajectory_images(ctx: ToolContext) -> list[tuple[str, str]]:
        """(canonical name, blob ref) of every image the trajectory has, inputs first, by number."""
        found: dict[str, str] = {}
        for name, ref in ctx.images.items():
            try:
                found.setdefault(canonical_image_name(name), ref)
            except UnknownImage:  # a malformed name in the context is not the model's fault: skip it
                continue
        return sorted(found.items(), key=lambda item: _name_order(item[0]))

    @staticmethod
    def resolve(name: str, ctx: ToolContext) -> str:
        """Blob reference of an image name (any spelling), or UnknownImage listing the names."""
        canonical = {canonical_image_name(n): ref for n, ref in ImageStore.trajectory_images(ctx)}
        return resolve_image(name, canonical)

    def data(self, ref: str, name: str = "") -> bytes:
        try:
            return self._blobs.get(ref)
        except BlobNotFound as exc:
            raise BadImageInput(f"{name or ref} is no longer available: {exc}") from None

    def bgr(self, ref: str, name: str = "") -> np.ndarray:
        """The image as a read-only 8-bit BGR array (copy it before changing it in place)."""
        cached = self._cache.get(("bgr", ref))
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        data = self.data(ref, name)
        try:
            arr = images.decode_bgr(data, self._max_pixels, self._density)
        except InvalidImage as exc:
            raise BadImageInput(f"{name or ref} cannot be used: {exc}") from None
        arr.flags.writeable = False
        self._cache.put(("bgr", ref), arr, arr.nbytes)
        return arr

    def size(self, ref: str, name: str = "") -> tuple[int, int]:
        """(width, height) as displayed, from the cached decode or the header (no decode)."""
        cached = self._cache.get(("bgr", ref))
        if cached is not None:
            return cached.shape[1], cached.shape[0]
        try:
            info = images.inspect(self.data(ref, name), self._max_pixels, self._density)
        except InvalidImage as exc:
            raise BadImageInput(f"{name or ref} cannot be used: {exc}") from None
        return info.width, info.height

    def region(self, ref: str, box: tuple[int, int, int, int], name: str = "") -> np.ndarray:
        """The pixels of box (x1, y1, x2, y2) of `bgr(ref)`, decoding only that region of a JPEG
        that is not cached (a crop of a photo costs a fraction of its full decode)."""
        x1, y1, x2, y2 = box
        cached = self._cache.get(("bgr", ref))
        if cached is not None:
            return cached[y1:y2, x1:x2]  # type: ignore[no-any-return]
        try:
            return images.decode_region_bgr(self.data(ref, name), box, self._max_pixels, self._density)
        except InvalidImage as exc:
            raise BadImageInput(f"{name or ref} cannot be used: {exc}") from None

    def plain_png(self, ref: str, name: str = "") -> bytes:
        """PNG bytes that decode exactly to `bgr(ref)` (the code sandbox's input files)."""
        cached = self._cache.get(("png", ref))
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        data = self.data(ref, name)
        try:
            plain = images.is_plain_png(images.inspect(data, self._max_pixels, self._density))
        except InvalidImage as exc:
            raise BadImageInput(f"{name or ref} cannot be used: {exc}") from None
        # Re-encoding starts from the cached decode the sandbox's raw copy needs anyway.
        png = data if plain else images.encode_png(self.bgr(ref, name), self._png_compression)
        self._cache.put(("png", ref), png, len(png))
        return png

    def put(self, data: bytes, origin: str, verify: bool = False) -> NewImage:
        """Store an encoded image a tool produced; it must pass the same checks as client images.

        `verify` decodes it fully: bytes that untrusted code wrote must not reach the model broken.
        """
        if len(data) > self.max_bytes:
            raise InvalidImage(f"{len(data)} bytes, over the limit of {self.max_bytes}")
        info = images.inspect(data, self._max_pixels, self._density)
        if info.format not in ("PNG", "JPEG"):
            raise InvalidImage(f"a {info.format} file; return PNG or JPEG images")
        if verify:
            images.decode_bgr(data, self._max_pixels, self._density)
        ref = self._blobs.put(data)
        return NewImage(ref=ref, width=info.width, height=info.height, origin=origin, mime_type=info.mime_type)


def open_image_store(common: CommonSettings, vision: VisionSettings) -> ImageStore:
    """A worker process's store, on the Redis `common` names (made in the process that uses it: after the fork)."""
    client = redis_clients.sync_client("cache", common)
    store = ImageStore(BlobStore(client, common.blob_ttl_s), common.max_image_pixels, common.max_image_bytes,
                       vision.decoded_cache_mb * 1024 * 1024, vision.png_compression, common.max_image_pixels_per_byte)
    if vision.decoded_cache_mb:  # deleting a trajectory reaches the pixels this process keeps of its images
        follow_erasures(redis_clients.url("cache", common), store.forget)  # announced where the blobs live
    return store


class Vision:
    """What every vision handler works with: the settings the worker read at its start, and its image store
    (opened on the first call, in the pool process that makes it)."""

    def __init__(self, common: CommonSettings, cfg: VisionSettings, store: ImageStore | None = None) -> None:
        self.common, self.cfg = common, cfg
        self._store = store
        self._lock = threading.Lock()

    @property
    def store(self) -> ImageStore:
        with self._lock:
            if self._store is None:
                self._store = open_image_store(self.common, self.cfg)
            return self._store
