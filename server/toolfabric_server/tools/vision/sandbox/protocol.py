"""What the worker, the zygote and a sandboxed child tell each other (JSON, one object a line).

worker → zygote: a `Request` per call. zygote → worker: `{"ready": …}` once at start, then per
call `{"pid": N}` when the child runs and `{"pid": N, "status": S, …}` when it has been reaped.
The child writes its `ChildResult` to `result.json` in the call directory; everything it writes
is untrusted, so the worker parses it defensively.
"""

from __future__ import annotations

from typing import TypedDict

# File names in the call directory (outside the child's working directory).
WORK_DIR = "work"
ARRAYS_DIR = "arrays"
OUTPUT_FILE = "output.txt"
RESULT_FILE = "result.json"
OUTPUT_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class Request(TypedDict):
    call_dir: str
    code: str
    # (canonical image name, PNG file name in the working directory, .npy path in the call
    # directory), in input order. The child maps the .npy copy-on-write: no decoding per call.
    inputs: list[tuple[str, str, str]]
    cpu_s: int
    memory_mb: int
    file_size_mb: int
    max_processes: int
    max_output_images: int
    # save() writes PNG, or JPEG at this quality for colour images over png_max_pixels.
    png_max_pixels: int
    jpeg_quality: int
    value_chars: int
    uid_base: int


class SavedImage(TypedDict):
    file: str
    label: str


class ChildError(TypedDict):
    type: str
    message: str
    traceback: str
    # Which sandbox limit the exception means was hit: "memory", "processes", "file_size" or None.
    limit: str | None


class ChildResult(TypedDict):
    value: str | None
    error: ChildError | None
    saved: list[SavedImage]
    layers: list[str]
