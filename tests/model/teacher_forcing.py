"""What the trainer's forward pass gives a served generation: `python -m tests.model.teacher_forcing CHECKPOINT` in the
engine venv, one JSON request on stdin, one JSON reply on stdout.

Request: {"prompt": text with one `<|image_pad|>` per image, "images": [paths], "prompt_ids": the engine's,
"output_ids": the engine's}. The prompt and images go through the processor TRL trains with
(toolfabric_server.flywheel.train.processor: its input ids, `mm_token_type_ids` and pixels), the engine's output ids are
appended, and one forward pass (in the engine's dtype, bf16) scores them. Reply: {"prompt_ids": the processor's,
"logprobs": log-softmax of each output id at its position, "argmax": the forward pass's greedy choice there}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(checkpoint: str) -> None:
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText

    from toolfabric_server.flywheel.train import processor

    request = json.loads(sys.stdin.read())
    images = [Image.open(p).convert("RGB") for p in request["images"]]
    batch = processor(Path(checkpoint))(text=[request["prompt"]], images=images or None, return_tensors="pt")
    model = AutoModelForImageTextToText.from_pretrained(checkpoint, dtype=torch.bfloat16).eval()
    prompt_ids = batch["input_ids"][0].tolist()
    out = torch.tensor([request["output_ids"]])
    ids = torch.cat([batch["input_ids"], out], dim=1)
    extra = {k: batch[k] for k in ("pixel_values", "image_grid_thw") if k in batch}
    if "mm_token_type_ids" in batch:  # the output ids are text
        extra["mm_token_type_ids"] = torch.cat([batch["mm_token_type_ids"], torch.zeros_like(out)], dim=1)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **extra).logits[0, len(prompt_ids) - 1:-1]
    logprobs = torch.log_softmax(logits.float(), dim=-1).gather(1, out[0][:, None])[:, 0]
    print(json.dumps({"prompt_ids": prompt_ids, "logprobs": logprobs.tolist(), "argmax": logits.argmax(-1).tolist()}))


if __name__ == "__main__":
    main(sys.argv[1])
