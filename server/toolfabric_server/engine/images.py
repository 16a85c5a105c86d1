"""The image registry of one trajectory: every image it has seen, under a stable name.

Inputs are `<image 1>`, `<image 2>`, … (`<image>` means `<image 1>`); images tools produce are
`<sub-image 1>`, `<sub-image 2>`, … in the order they arrive. Any tool can use any of them. Bytes
are kept in memory once loaded, since every model step sends every image again.
"""

from __future__ import annotations

from dataclasses import dataclass

from toolfabric.v1 import fabric_pb2 as pb
from toolfabric_server.engine.ports import BlobReader


@dataclass(frozen=True)
class RegisteredImage:
    name: str
    ref: str
    width: int
    height: int
    origin: str
    mime_type: str
    step: int

    @classmethod
    def from_ref(cls, ref: pb.ImageRef) -> RegisteredImage:
        return cls(ref.name, ref.blob, ref.width, ref.height, ref.origin, ref.mime_type, ref.step)

    def as_ref(self) -> pb.ImageRef:
        """The image as events and records carry it."""
        return pb.ImageRef(name=self.name, blob=self.ref, width=self.width, height=self.height,
                           origin=self.origin, mime_type=self.mime_type, step=self.step)


class ImageRegistry:
    def __init__(self, blobs: BlobReader) -> None:
        self._blobs = blobs
        self._images: list[RegisteredImage] = []
        self._bytes: dict[str, bytes] = {}
        self._outputs = 0

    def add_input(self, ref: str, width: int, height: int, mime_type: str,
                  data: bytes | None = None) -> RegisteredImage:
        index = sum(1 for i in self._images if i.step == 0) + 1
        return self._add(RegisteredImage(f"<image {index}>", ref, width, height, "user input", mime_type, 0), data)

    def add_output(self, ref: str, width: int, height: int, origin: str, mime_type: str, step: int) -> RegisteredImage:
        self._outputs += 1
        image = RegisteredImage(f"<sub-image {self._outputs}>", ref, width, height, origin, mime_type, step)
        return self._add(image, None)

    def carry(self, image: RegisteredImage) -> RegisteredImage:
        """An image of an earlier turn of the conversation, under the name it had there."""
        if image.name.startswith("<sub-image "):
            self._outputs = max(self._outputs, int(image.name.removeprefix("<sub-image ").rstrip(">")))
        return self._add(image, None)

    def _add(self, image: RegisteredImage, data: bytes | None) -> RegisteredImage:
        self._images.append(image)
        if data is not None:
            self._bytes[image.ref] = data
        return image

    @property
    def images(self) -> list[RegisteredImage]:
        return list(self._images)

    def refs(self) -> dict[str, str]:
        """Name → blob reference, as tools receive it in their context."""
        return {i.name: i.ref for i in self._images}

    async def data(self, image: RegisteredImage) -> bytes:
        if image.ref not in self._bytes:
            self._bytes[image.ref] = await self._blobs.get(image.ref)
        return self._bytes[image.ref]
