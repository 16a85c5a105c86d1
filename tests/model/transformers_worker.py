"""A transformers engine on a tiny Qwen-VL checkpoint, answering one JSON line per request on stdin/stdout.

Runs in the engine venv (torch, transformers): `python -m tests.model.transformers_worker CHECKPOINT`. Each
request is {"input_ids": [...], "images": [base64 PNG...], "max_new_tokens": n, "end_turn": bool}; the ids are
used as the prompt exactly as given (token-in), the images go through the checkpoint's real image processor
(the PIL one) and the model's real vision tower, and transformers itself refuses ids whose image placeholders
do not match the image features. The reply is {"completion": ids, "logprobs": [...], "grids": [tokens per
image]} or {"error": "..."}. Random weights rarely end their turn: with `end_turn` the last token is forced to
<|im_end|> (generate's forced_eos_token_id), without it <|im_end|> is suppressed, so a test gets both kinds of
turn boundary.
"""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path


def main(checkpoint: str) -> None:
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, PreTrainedTokenizerFast
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    root = Path(checkpoint)
    model = AutoModelForImageTextToText.from_pretrained(root, dtype=torch.float32).eval()
    config = json.loads((root / "preprocessor_config.json").read_text())
    processor = Qwen2VLImageProcessorPil(**{k: v for k, v in config.items()
                                            if k not in ("image_processor_type", "processor_class")})
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(root / "tokenizer.json"))
    end, pad = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")
    image_pad = tokenizer.convert_tokens_to_ids("<|image_pad|>")
    torch.manual_seed(0)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            ids = torch.tensor([request["input_ids"]])
            extra: dict[str, object] = ({"forced_eos_token_id": end} if request["end_turn"]
                                        else {"suppress_tokens": [end]})
            grids: list[int] = []
            if request["images"]:
                pictures = [Image.open(io.BytesIO(base64.b64decode(b))).convert("RGB") for b in request["images"]]
                processed = processor(images=pictures, return_tensors="pt")
                extra |= {"pixel_values": processed["pixel_values"], "image_grid_thw": processed["image_grid_thw"],
                          "mm_token_type_ids": (ids == image_pad).int()}  # multimodal rope positions, as trained
                grids = [int(g.prod()) // processor.merge_size ** 2 for g in processed["image_grid_thw"]]
            with torch.no_grad():
                out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                                     max_new_tokens=request["max_new_tokens"], output_scores=True,
                                     return_dict_in_generate=True, eos_token_id=end, pad_token_id=pad, **extra)
            completion = out.sequences[0, ids.shape[1]:].tolist()
            logprobs = [float(torch.log_softmax(score[0].float(), -1)[token])
                        for score, token in zip(out.scores, completion, strict=True)]
            reply = {"completion": completion, "logprobs": logprobs, "grids": grids,
                     "text": tokenizer.decode([t for t in completion if t != end])}
        except Exception as exc:  # the test reads the engine's own error
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
