"""Inside a sandboxed child: confine, load the images, run the model's code, report.

The code runs with `np`, `cv2`, `Image` (PIL), `images` (name → BGR uint8 array), `image` (the
first input) and `save(array, label=None)`. Its last expression's value is returned like a
notebook cell's; an image-like value is returned as an image.
"""

from __future__ import annotations

import ast
import errno
import json
import linecache
import os
import sys
import traceback
from typing import Any

import cv2
import numpy as np
from PIL import Image

from toolfabric_server.common.errors import UnknownImage
from toolfabric_server.common.tools import canonical_image_name
from toolfabric_server.tools.vision.sandbox import protocol
from toolfabric_server.tools.vision.sandbox.confine import Limits, confine

SOURCE_NAME = "<code>"
_TRACEBACK_LINES = 40


class ImageDict(dict):
    """`images[...]` accepting any spelling of an image name ('<image>', 'image 1', 'sub-image 2')."""

    def __missing__(self, key: object) -> np.ndarray:
        if isinstance(key, str):
            try:
                canonical = canonical_image_name(key)
            except UnknownImage:
                canonical = key
            if canonical != key and dict.__contains__(self, canonical):
                return dict.__getitem__(self, canonical)  # type: ignore[no-any-return]
        raise KeyError(f"no image named {key!r}; this call has: {', '.join(self) or 'no images'}")


def to_bgr_uint8(value: Any) -> np.ndarray:
    """An array or PIL image as something cv2.imwrite stores faithfully (gray, BGR or BGRA, 8-bit)."""
    if isinstance(value, Image.Image):
        if value.mode not in ("L", "RGB", "RGBA"):
            value = value.convert("RGBA" if "A" in value.mode or "transparency" in value.info else "RGB")
        arr = np.asarray(value)
        if arr.ndim == 3:
            arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA if arr.shape[2] == 4 else cv2.COLOR_RGB2BGR)
        return arr
    if not isinstance(value, np.ndarray):
        raise TypeError(f"save() takes a numpy array or a PIL image, not {type(value).__name__}")
    arr = value
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ValueError(f"save() needs an HxW, HxWx3 or HxWx4 array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"save() got an empty image of shape {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        arr = (arr >> 8).astype(np.uint8)
    elif arr.dtype.kind == "f":
        # Floats in [0, 1] are the usual normalised-image convention; anything else is 0 to 255.
        peak = float(np.nanmax(arr)) if arr.size else 0.0
        arr = np.nan_to_num(arr * 255.0 if peak <= 1.0 else arr)
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def looks_like_image(value: Any) -> bool:
    if isinstance(value, Image.Image):
        return True
    return (
        isinstance(value, np.ndarray)
        and value.dtype == np.uint8
        and (value.ndim == 2 or (value.ndim == 3 and value.shape[2] in (1, 3, 4)))
        and min(value.shape[:2]) >= 2
    )


class Saver:
    """`save(array, label=None)`: writes output_N.png (large photos: .jpg) in the working directory.

    Returns the file's name. The format follows the fixed tools' rule: PNG, except colour images
    over `png_max_pixels`, which would take most of a second and ~20 MB as PNG.
    """

    def __init__(self, limit: int, png_max_pixels: int, jpeg_quality: int) -> None:
        self.limit = limit
        self.png_max_pixels = png_max_pixels
        self.jpeg_quality = jpeg_quality
        self.saved: list[protocol.SavedImage] = []

    def __call__(self, array: Any, label: str | None = None) -> str:
        if len(self.saved) >= self.limit:
            raise RuntimeError(f"save(): this call already returned {self.limit} images, the limit per call")
        bgr = to_bgr_uint8(array)
        stem = f"output_{len(self.saved) + 1}"
        if bgr.ndim == 3 and bgr.shape[2] == 3 and bgr.shape[0] * bgr.shape[1] > self.png_max_pixels:
            name, params = f"{stem}.jpg", [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality]
        else:
            name, params = f"{stem}.png", [cv2.IMWRITE_PNG_COMPRESSION, 1]
        if not cv2.imwrite(name, bgr, params):
            raise OSError(f"save(): could not write {name}")
        self.saved.append({"file": name, "label": str(label) if label is not None else ""})
        return name


def map_images(inputs: list[tuple[str, str, str]]) -> ImageDict:
    """The inputs' raw arrays, mapped copy-on-write: free to load, writable, never written back."""
    images = ImageDict()
    for name, _, array_path in inputs:
        images[name] = np.load(array_path, mmap_mode="c", allow_pickle=False).view(np.ndarray)
    if "<image 1>" in images:
        images["<image>"] = images["<image 1>"]
    return images


def execute(code: str, namespace: dict[str, Any]) -> Any:
    """Run `code` like a notebook cell: the value of a trailing expression is returned."""
    linecache.cache[SOURCE_NAME] = (len(code), None, code.splitlines(True), SOURCE_NAME)
    tree = ast.parse(code, SOURCE_NAME, "exec")
    last = tree.body[-1] if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    if last is not None:
        tree.body.pop()
    exec(compile(tree, SOURCE_NAME, "exec"), namespace)  # noqa: S102 - this is the sandbox
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), SOURCE_NAME, "eval"), namespace)  # noqa: S307


def describe_exception(exc: BaseException) -> protocol.ChildError:
    te = traceback.TracebackException.from_exception(exc)
    # Only the model's own frames: the runner's frames would be noise to it.
    te.stack = traceback.StackSummary.from_list([f for f in te.stack if f.filename == SOURCE_NAME])
    lines = "".join(te.format()).splitlines()
    if len(lines) > _TRACEBACK_LINES:
        lines = ["  …", *lines[-_TRACEBACK_LINES:]]
    return {"type": type(exc).__name__, "message": str(exc)[:2000], "traceback": "\n".join(lines),
            "limit": limit_hit(exc)}


def limit_hit(exc: BaseException) -> str | None:
    """The sandbox limit an exception is the symptom of, if any."""
    text = str(exc)
    if isinstance(exc, MemoryError) or (
        isinstance(exc, cv2.error) and ("Insufficient memory" in text or "Failed to allocate" in text)
    ):
        return "memory"
    if isinstance(exc, OSError) and exc.errno == errno.EAGAIN and "fork" in _frames_text(exc):
        return "processes"
    if isinstance(exc, RuntimeError) and "can't start new thread" in text:
        return "processes"
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return "file_size"
    return None


def _frames_text(exc: BaseException) -> str:
    return " ".join(f"{f.name} {f.line}" for f in traceback.extract_tb(exc.__traceback__))


def _redirect_io(call_dir: str) -> int:
    """stdout+stderr → output.txt, stdin ← /dev/null, result.json on fd 3, every other fd closed."""
    out = os.open(os.path.join(call_dir, protocol.OUTPUT_FILE), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    result = os.open(os.path.join(call_dir, protocol.RESULT_FILE), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.dup2(result, 3)
    os.closerange(4, os.sysconf("SC_OPEN_MAX"))  # the zygote's pipes to the worker among them
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", buffering=1, closefd=False, encoding="utf-8", errors="backslashreplace")
    sys.stderr = open(2, "w", buffering=1, closefd=False, encoding="utf-8", errors="backslashreplace")
    return 3


def child_main(request: protocol.Request, zygote_layers: list[str]) -> int:
    """Runs in the forked child; returns its exit status."""
    result_fd = _redirect_io(request["call_dir"])
    workdir = os.path.join(request["call_dir"], protocol.WORK_DIR)
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update({"HOME": workdir, "TMPDIR": workdir, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    limits = Limits(request["cpu_s"], request["memory_mb"], request["file_size_mb"], request["max_processes"])
    images = map_images(request["inputs"])  # before Landlock hides the call directory
    layers = zygote_layers + confine(workdir, limits, request["uid_base"])

    me = os.getpid()
    saver = Saver(request["max_output_images"], request["png_max_pixels"], request["jpeg_quality"])
    result: protocol.ChildResult = {"value": None, "error": None, "saved": saver.saved, "layers": layers}
    try:
        first = images.get("<image 1>", next(iter(images.values()), None))
        namespace: dict[str, Any] = {
            "__name__": "__main__", "__builtins__": __builtins__,
            "np": np, "cv2": cv2, "Image": Image, "images": images, "image": first, "save": saver,
        }
        value = execute(request["code"], namespace)
        if looks_like_image(value):
            saver(value, "last expression")
        elif value is not None:
            result["value"] = repr(value)[: request["value_chars"] + 1]
    except SystemExit:
        pass  # exit() ends the code early; that is not an error
    except BaseException as exc:
        result["error"] = describe_exception(exc)
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: S110 - a full disk must not hide the result
                pass
    if os.getpid() != me:
        return 0  # a process the code forked: only the call's own process reports
    try:
        os.write(result_fd, json.dumps(result).encode())
    except OSError:
        return 1  # the code closed or replaced fd 3: the worker reports a run without a result
    return 0
