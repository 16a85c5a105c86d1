"""A call directory: the child's working directory plus the files only the worker trusts.

    <sandbox_dir>/call-XXXX/          0711, the worker's
        work/                         0700, the child's cwd (chowned to the child's uid as root)
            image_1.png, …            inputs, as files
            output_1.png, …           what save() wrote; any other new .png/.jpg is returned too
        arrays/image_1.npy, …         inputs as raw BGR, mapped by the child before it confines itself
        output.txt, result.json       opened by the child before it drops privileges

Everything under work/ was written by untrusted code: outputs are opened without following
symlinks, must be regular single-link files and are size-capped before they are read.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from toolfabric_server.common.errors import ConfigurationError
from toolfabric_server.tools.vision.sandbox import protocol

_RESULT_MAX_BYTES = 1024 * 1024
_SETUP_GRACE_S = 60.0
_STALE_AFTER_S = 3600.0
_PRUNE_EVERY_S = 600.0
_last_prune: dict[Path, float] = {}


def input_file_name(name: str) -> str:
    """'<image 1>' → 'image_1.png', '<sub-image 2>' → 'sub_image_2.png'."""
    return name.strip("<>").replace("-", "_").replace(" ", "_") + ".png"


def sandbox_root(configured: str) -> Path:
    """The directory call directories go in, created if needed.

    As root, children run under uids of their own and must be able to walk down to their working
    directory, so every directory above it has to be searchable by others (o+x).
    """
    root = Path(configured) if configured else Path(tempfile.gettempdir()) / f"toolfabric-sandbox-{os.getuid()}"
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o711)  # noqa: S103 - searchable, not listable
    if os.geteuid() == 0:
        for parent in root.resolve().parents:
            if not parent.stat().st_mode & stat.S_IXOTH:
                raise ConfigurationError(
                    f"TOOLFABRIC_VISION_SANDBOX_DIR={root}: {parent} is not searchable by other users (o+x), "
                    "so sandboxed code could not reach its working directory"
                )
    if time.monotonic() - _last_prune.get(root, -_PRUNE_EVERY_S) >= _PRUNE_EVERY_S:
        _last_prune[root] = time.monotonic()
        prune_stale(root)
    return root


@dataclass
class OutputFile:
    file: str
    label: str
    data: bytes


def _child_error(raw: dict[str, Any]) -> protocol.ChildError:
    limit = raw.get("limit")
    return protocol.ChildError(
        type=str(raw.get("type", "Exception"))[:200], message=str(raw.get("message", ""))[:2000],
        traceback=str(raw.get("traceback", ""))[:20000], limit=limit if isinstance(limit, str) else None,
    )


class Workspace:
    def __init__(self, root: Path) -> None:
        # The worker's pid in the name lets a later worker remove it if this one is killed mid-call.
        self.call_dir = Path(tempfile.mkdtemp(prefix=f"call-{os.getpid()}-", dir=root))
        os.chmod(self.call_dir, 0o711)  # noqa: S103 - traversable, not listable, by the child's uid
        self.work = self.call_dir / protocol.WORK_DIR
        self.work.mkdir(mode=0o700)
        self.arrays = self.call_dir / protocol.ARRAYS_DIR
        self.arrays.mkdir(mode=0o700)
        self._inputs: dict[str, tuple[int, int]] = {}

    def add_input(self, name: str, png: bytes, bgr: np.ndarray) -> tuple[str, str, str]:
        """Write an input as a PNG file for the code and as a raw array for `images`."""
        file = input_file_name(name)
        path = self.work / file
        path.write_bytes(png)
        st = path.stat()
        self._inputs[file] = (st.st_size, st.st_mtime_ns)
        array_path = self.arrays / (Path(file).stem + ".npy")
        np.save(array_path, bgr, allow_pickle=False)
        return name, file, str(array_path)

    def output_text(self, budget: int) -> tuple[str, bool]:
        """stdout+stderr; over `budget` characters, its head and tail with a note between them."""
        path = self.call_dir / protocol.OUTPUT_FILE
        try:
            size = path.stat().st_size
            with path.open("rb") as f:
                if size <= 4 * budget:
                    text = f.read().decode("utf-8", "replace")
                    total = len(text)
                else:  # never read a huge file whole: its head and its tail are all we keep
                    head = f.read(2 * budget)
                    f.seek(size - 2 * budget)
                    text = (head + f.read()).decode("utf-8", "replace")
                    total = size
        except FileNotFoundError:
            return "", False
        if total <= budget:
            return text, False
        keep = max((budget - 80) // 2, 10)
        note = f"\n[… output truncated: {total - 2 * keep} of {total} characters omitted …]\n"
        return text[:keep] + note + text[-keep:], True

    def result(self) -> protocol.ChildResult | None:
        """The child's own report, or None if it wrote none (killed, crashed) or wrote garbage."""
        path = self.call_dir / protocol.RESULT_FILE
        try:
            with path.open("rb") as f:
                raw = f.read(_RESULT_MAX_BYTES + 1)
        except FileNotFoundError:
            return None
        if not raw or len(raw) > _RESULT_MAX_BYTES:
            return None
        try:
            parsed = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(parsed, dict):
            return None
        saved = [s for s in parsed.get("saved") or [] if isinstance(s, dict) and isinstance(s.get("file"), str)]
        error = parsed.get("error")
        return protocol.ChildResult(
            value=parsed["value"] if isinstance(parsed.get("value"), str) else None,
            error=_child_error(error) if isinstance(error, dict) else None,
            saved=[protocol.SavedImage(file=s["file"], label=str(s.get("label", ""))) for s in saved],
            layers=[str(x) for x in parsed.get("layers") or []],
        )

    def outputs(self, saved: list[protocol.SavedImage], limit: int,
                max_bytes: int) -> tuple[list[OutputFile], list[str]]:
        """Images to return: save()d ones in order, then other new or changed image files by name.

        Returns (files, problems) — problems are one line each for the model.
        """
        problems: list[str] = []
        labels = {s["file"]: s["label"] for s in saved}
        ordered = [s["file"] for s in saved]
        try:
            entries = sorted(os.scandir(self.work), key=lambda e: e.name)
        except OSError:
            entries = []
        for entry in entries:
            if entry.name in labels or not entry.name.lower().endswith(protocol.OUTPUT_IMAGE_SUFFIXES):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if self._inputs.get(entry.name) == (st.st_size, st.st_mtime_ns):
                continue  # an input left as it was
            ordered.append(entry.name)
        files: list[OutputFile] = []
        for file in ordered:
            if len(files) >= limit:
                problems.append(f"{len(ordered) - limit} more image(s) not returned: at most {limit} per call")
                break
            data, problem = self._read_output(file, max_bytes)
            if problem:
                problems.append(problem)
            elif data is not None:
                files.append(OutputFile(file, labels.get(file, ""), data))
        return files, problems

    def _read_output(self, file: str, max_bytes: int) -> tuple[bytes | None, str | None]:
        if os.sep in file or file in (".", ".."):
            return None, f"{file!r} is not a file name in the working directory"
        try:
            fd = os.open(self.work / file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            return None, f"could not read {file}: {exc.strerror}"
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
                return None, f"{file} is not a regular file"
            if st.st_size > max_bytes:
                return None, f"{file} is {st.st_size} bytes, over the limit of {max_bytes}"
            with os.fdopen(fd, "rb", closefd=False) as f:
                return f.read(max_bytes + 1), None
        finally:
            os.close(fd)

    def remove(self) -> None:
        _remove_tree(self.call_dir)


def _remove_tree(path: Path) -> None:
    def make_writable(func, failed, _exc):  # type: ignore[no-untyped-def]
        # Code running as our own uid may have chmod-ed its files read-only.
        os.chmod(os.path.dirname(failed), 0o700)
        if os.path.isdir(failed) and not os.path.islink(failed):
            os.chmod(failed, 0o700)
        func(failed)

    shutil.rmtree(path, onerror=make_writable)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prune_stale(root: Path, now: float | None = None) -> list[str]:
    """Remove call directories that a killed worker process left behind; returns their names.

    A directory is stale when the worker process named in it is gone (and it is over a minute
    old, so a directory being set up is never touched), or when it is over an hour old: no call
    lives that long (the task time limit is minutes).
    """
    now = time.time() if now is None else now
    removed = []
    for entry in os.scandir(root):
        if not entry.name.startswith("call-") or not entry.is_dir(follow_symlinks=False):
            continue
        owner = entry.name.split("-")[1]
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        owner_gone = owner.isdigit() and not _alive(int(owner))
        if (owner_gone and age > _SETUP_GRACE_S) or age > _STALE_AFTER_S:
            try:
                _remove_tree(Path(entry.path))
            except OSError:
                continue  # removed meanwhile by another worker process
            removed.append(entry.name)
    return removed
