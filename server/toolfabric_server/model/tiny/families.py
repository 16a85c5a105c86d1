"""The three tiny families: which architecture, which dialect's tokens and template, which image processor.

Sizes are the smallest vLLM's CPU attention accepts (head_dim 64; 16 is refused) and that keep a
Qwen-VL vision tower whole (one or two blocks, real patch and merge sizes), so the engines run
every real code path in milliseconds. mrope sections sum to head_dim / 2 as the real models' do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toolfabric_server.model.tiny import templates, tokens

TEXT = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 2,
        "num_key_value_heads": 1, "head_dim": 64, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "tie_word_embeddings": True}
MROPE = {"rope_type": "default", "mrope_section": [8, 12, 12]}


@dataclass(frozen=True)
class Family:
    name: str
    dialect: str          # toolfabric_server.model.dialects name
    added: tuple[str, ...]
    chat_template: str
    patch_size: int = 0   # 0: a text-only family
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    @property
    def vision(self) -> bool:
        return self.patch_size > 0

    def config(self, vocab_size: int, ids: dict[str, int]) -> Any:
        """The transformers config (random weights are made from it)."""
        from transformers import Qwen2_5_VLConfig, Qwen3Config, Qwen3VLConfig

        eos = ids["<|im_end|>"]
        if self.name == "qwen3":
            return Qwen3Config(vocab_size=vocab_size, bos_token_id=ids["<|endoftext|>"], eos_token_id=eos,
                               dtype="bfloat16", **TEXT)
        vision_ids = {"image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
                      "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"]}
        if self.name == "qwen3vl":
            text = {**TEXT, "vocab_size": vocab_size, "rope_scaling": MROPE, "bos_token_id": ids["<|endoftext|>"],
                    "eos_token_id": eos}
            vision = {"depth": 1, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2, "in_channels": 3,
                      "patch_size": self.patch_size, "spatial_merge_size": 2, "temporal_patch_size": 2,
                      "out_hidden_size": TEXT["hidden_size"], "num_position_embeddings": 256,
                      "deepstack_visual_indexes": [0]}
            return Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=True,
                                 dtype="bfloat16", **vision_ids)
        # deepeyes: Qwen2.5-VL (window attention in the vision tower, one full-attention block).
        text = {k: v for k, v in TEXT.items() if k != "head_dim"}  # Qwen2: head_dim = hidden / heads = 64
        vision = {"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 2, "in_chans": 3,
                  "patch_size": self.patch_size, "spatial_merge_size": 2, "temporal_patch_size": 2,
                  "window_size": 112, "fullatt_block_indexes": [1], "out_hidden_size": TEXT["hidden_size"]}
        return Qwen2_5_VLConfig(text_config={**text, "vocab_size": vocab_size, "rope_scaling": MROPE,
                                             "bos_token_id": ids["<|endoftext|>"], "eos_token_id": eos},
                                vision_config=vision, tie_word_embeddings=True, dtype="bfloat16", **vision_ids)

    def preprocessor_config(self) -> dict[str, Any]:
        """Qwen2-VL's image processor (PIL path; transformers falls back to it without torchvision)."""
        unit = self.patch_size * 2  # one image token per merged 2x2 patch block
        return {
            "image_processor_type": "Qwen2VLImageProcessor", "processor_class": None,
            "do_resize": True, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
            "do_convert_rgb": True, "image_mean": list(self.image_mean), "image_std": list(self.image_std),
            "patch_size": self.patch_size, "temporal_patch_size": 2, "merge_size": 2,
            # Real models allow thousands of image tokens; the tiny ones cap an image at 256 (4096-token context).
            "min_pixels": 4 * unit * unit, "max_pixels": 256 * unit * unit,
            "size": {"shortest_edge": 4 * unit * unit, "longest_edge": 256 * unit * unit},
        }


CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
FAMILIES = {
    "qwen3": Family("qwen3", "qwen3vl", tokens.ADDED_QWEN3, templates.QWEN3_VL),
    "qwen3vl": Family("qwen3vl", "qwen3vl", tokens.ADDED_QWEN3, templates.QWEN3_VL, patch_size=16),
    "deepeyes": Family("deepeyes", "deepeyes", tokens.ADDED_QWEN25, templates.QWEN25_VL, patch_size=14,
                       image_mean=CLIP_MEAN, image_std=CLIP_STD),
}
