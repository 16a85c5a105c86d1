"""A model's own tokenizer and image-token arithmetic, read from its checkpoint directory.

The gateway tokenises the text it appends to a trajectory (observations, turn markup) with the exact
tokenizer the engine uses: `tokenizer.json` of the checkpoint, through the light `tokenizers` library
(no torch, no transformers in the gateway). Image placeholders are expanded here too, so the ids the
gateway sends are the ids the model reads: Qwen-VL processors resize each image to a multiple of
patch_size * merge_size within [min_pixels, max_pixels] (`smart_resize`, below) and give it one
`<|image_pad|>` per merged patch. Written out rather than imported because the only implementation
lives in transformers' image processors, which need torch; tests compare it with the real processor.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from toolfabric_server.model.errors import TokenizerUnavailable

# Qwen2-VL's defaults, used when preprocessor_config.json leaves a value out.
_PATCH, _MERGE, _MIN_PIXELS, _MAX_PIXELS = 14, 2, 56 * 56, 14 * 14 * 4 * 1280


@dataclass(frozen=True)
class ImageGrid:
    """How a Qwen-VL processor cuts an image: patch size, merge size and the pixel budget."""

    patch_size: int = _PATCH
    merge_size: int = _MERGE
    min_pixels: int = _MIN_PIXELS
    max_pixels: int = _MAX_PIXELS

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ImageGrid:
        """From preprocessor_config.json: transformers 5 writes the pixel budget as size.shortest_edge/longest_edge,
        older configs as min_pixels/max_pixels."""
        size = config.get("size")
        size = size if isinstance(size, dict) else {}
        return cls(patch_size=int(config.get("patch_size", _PATCH)), merge_size=int(config.get("merge_size", _MERGE)),
                   min_pixels=int(size.get("shortest_edge", config.get("min_pixels", _MIN_PIXELS))),
                   max_pixels=int(size.get("longest_edge", config.get("max_pixels", _MAX_PIXELS))))

    def resized(self, height: int, width: int) -> tuple[int, int]:
        """Qwen2-VL's smart_resize: the (height, width) the processor resizes an image to."""
        factor = self.patch_size * self.merge_size
        if min(height, width) < 1 or max(height, width) / min(height, width) > 200:
            raise ValueError(f"an image of {width}x{height} cannot be given to the model (aspect ratio over 200)")
        h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
        if h_bar * w_bar > self.max_pixels:
            beta = math.sqrt(height * width / self.max_pixels)
            h_bar = max(factor, math.floor(height / beta / factor) * factor)
            w_bar = max(factor, math.floor(width / beta / factor) * factor)
        elif h_bar * w_bar < self.min_pixels:
            beta = math.sqrt(self.min_pixels / (height * width))
            h_bar = math.ceil(height * beta / factor) * factor
            w_bar = math.ceil(width * beta / factor) * factor
        return h_bar, w_bar

    def tokens(self, width: int, height: int) -> int:
        """Placeholder tokens of one image: its merged patches (grid_h * grid_w / merge_size², one frame)."""
        h, w = self.resized(height, width)
        factor = self.patch_size * self.merge_size
        return (h // factor) * (w // factor)


class ModelTokenizer:
    """The checkpoint's tokenizer, its image pad id, and the image grid of its processor."""

    def __init__(self, tokenizer: Tokenizer, grid: ImageGrid, image_pad: str = "<|image_pad|>",
                 source: str = "") -> None:
        self._tok, self.grid, self.source = tokenizer, grid, source
        self.image_pad_id = tokenizer.token_to_id(image_pad)

    @classmethod
    def load(cls, checkpoint: str | Path) -> ModelTokenizer:
        root = Path(checkpoint)
        try:
            tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises a bare Exception for a missing or broken file
            raise TokenizerUnavailable(f"cannot load the tokenizer of checkpoint {root}: {exc}") from exc
        processor = root / "preprocessor_config.json"
        try:
            grid = ImageGrid.from_config(json.loads(processor.read_text())) if processor.exists() else ImageGrid()
        except (ValueError, TypeError) as exc:
            raise TokenizerUnavailable(f"cannot read {processor}: {exc}") from exc
        return cls(tokenizer, grid, source=str(root))

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def token_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def encode(self, text: str, image_sizes: Sequence[tuple[int, int]] = ()) -> list[int]:
        """Ids of `text` (special tokens as in the text, none added), each image pad expanded to its image's count.

        `image_sizes` are (width, height) of the images whose placeholders `text` holds, in order."""
        ids = self._tok.encode(text, add_special_tokens=False).ids
        if self.image_pad_id is None:
            return list(ids)
        out: list[int] = []
        sizes = iter(image_sizes)
        for token in ids:
            if token != self.image_pad_id:
                out.append(token)
                continue
            size = next(sizes, None)
            if size is None:
                raise ValueError("the text has more image placeholders than images")
            out.extend([token] * self.grid.tokens(*size))
        if next(sizes, None) is not None:
            raise ValueError("the text has fewer image placeholders than images")
        return out

    def decode(self, ids: list[int], skip_special: bool = False) -> str:
        return self._tok.decode(ids, skip_special_tokens=skip_special)

    def image_runs(self, ids: list[int]) -> list[int]:
        """The length of every run of image pad ids in `ids`: the placeholder count per image, in order."""
        runs: list[int] = []
        previous = None
        for token in ids:
            if token == self.image_pad_id:
                if previous == token:
                    runs[-1] += 1
                else:
                    runs.append(1)
            previous = token
        return runs


def load_tokenizers(checkpoints: dict[str, str]) -> dict[str, ModelTokenizer]:
    """Every configured model's tokenizer (TOOLFABRIC_MODEL_CHECKPOINTS), loaded at start-up: a wrong path stops
    the gateway there, named, instead of failing every trajectory of that model."""
    out = {}
    for model, path in checkpoints.items():
        try:
            out[model] = ModelTokenizer.load(path)
        except TokenizerUnavailable as exc:
            raise TokenizerUnavailable(f"TOOLFABRIC_MODEL_CHECKPOINTS[{model!r}]: {exc}") from exc
    return out
