"""SFT with TRL's SFTTrainer, unchanged (`python -m toolfabric_server.flywheel.train EXPORT BASE OUT`, engine venv).

The export's `trl.jsonl` goes into TRL's own data path as it is: `datasets.load_dataset("json")`, then
SFTTrainer with its vision collator (DataCollatorForVisionLanguageModeling, picked by TRL because the rows
have `images`) and `assistant_only_loss=True` (the loss is on the `{% generation %}` spans of the chat
template: every assistant turn, its `<|im_end|>` and the `\\n` after it; never the system prompt, the
question, the observations or the image placeholders). Image paths are relative to the export folder, so
training runs there.

One thing is built by hand, and only because this CPU machine has no torchvision: transformers'
`AutoProcessor` for Qwen-VL also builds a video processor, which needs torchvision, so the processor is the
checkpoint's own tokenizer and PIL image processor put together (`processor`). With torchvision (any GPU
machine) it is `AutoProcessor.from_pretrained(BASE)`, and that is what is used when it loads.

Writes OUT as a checkpoint the engines serve (weights, config, and the base's tokenizer, chat template and
image processor config) and OUT/train_log.json (loss per step, settings, seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

# The base's files a served checkpoint needs besides what save_pretrained writes.
CARRIED = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "preprocessor_config.json",
           "special_tokens_map.json", "toolfabric_tiny.json")


def processor(base: Path) -> Any:
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(base)
    except ImportError:  # no torchvision: the video processor cannot be built (images need none of it)
        pass
    from transformers import AutoTokenizer, Qwen2VLImageProcessorPil, Qwen3VLProcessor

    class ImagesOnlyProcessor(Qwen3VLProcessor):
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument_name == "video_processor" and argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    tokenizer = AutoTokenizer.from_pretrained(base)
    return ImagesOnlyProcessor(image_processor=Qwen2VLImageProcessorPil.from_pretrained(base), tokenizer=tokenizer,
                               video_processor=None, chat_template=tokenizer.chat_template)


def first_steps(row: dict[str, Any], steps: int) -> dict[str, Any]:
    """The row cut after its `steps`-th assistant turn: the system prompt, the question and the first steps with
    the observations between them, and the images those turns show (`images` fill the placeholders in order).

    Why: a whole trajectory is 4-5k tokens here, mostly observations the loss never touches; its first steps hold
    the tool-call format the model must learn at a third of the cost. Cutting at a turn, not at a token count
    (TRL's max_length), never splits an image's placeholder run."""
    kept, seen = [], 0
    for message in row["messages"]:
        kept.append(message)
        seen += message["role"] == "assistant"
        if seen == steps:
            break
    shown = sum(part["type"] == "image" for message in kept for part in message["content"])
    return {**row, "messages": kept, "images": row["images"][:shown]}


def train(export: Path, base: Path, out: Path, *, max_steps: int, epochs: float, learning_rate: float,
          seed: int, max_length: int | None = None, steps_per_row: int = 0,
          scheduler: str = "constant_with_warmup", threads: int = 1) -> dict[str, Any]:
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForImageTextToText
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(seed)
    # One thread: the tiny model gains nothing from two, and on a shared CPU a second thread makes every op wait
    # for whichever of the two the scheduler left out (the first 200-step run here did a step per 30-70 s).
    torch.set_num_threads(threads)
    export, base, out = export.resolve(), base.resolve(), out.resolve()
    dataset = load_dataset("json", data_files=str(export / "trl.jsonl"), split="train")
    if len(dataset) == 0:
        raise SystemExit(f"{export / 'trl.jsonl'} has no rows: nothing to train on")
    if steps_per_row:
        dataset = dataset.map(first_steps, fn_kwargs={"steps": steps_per_row})
    # Eager attention: on CPU its backward over ~10k-token trajectories is several times faster than SDPA's.
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32, attn_implementation="eager")
    config = SFTConfig(
        output_dir=str(out / "trainer"), max_steps=max_steps, num_train_epochs=epochs,
        per_device_train_batch_size=1, gradient_accumulation_steps=1, learning_rate=learning_rate,
        # A short warm-up only for long runs: the first step of a short one would be spent at learning rate 0.
        lr_scheduler_type=scheduler, warmup_steps=max_steps // 10 if max_steps >= 50 else 0,
        assistant_only_loss=True, max_length=max_length, gradient_checkpointing=False, bf16=False, use_cpu=True,
        logging_steps=1, save_strategy="no", report_to=[], seed=seed, dataloader_num_workers=0,
        disable_tqdm=True)
    started = time.monotonic()
    cwd = Path.cwd()
    os.chdir(export)  # the rows' image paths are relative to the export folder
    try:
        trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=processor(base))
        trainer.train()
    finally:
        os.chdir(cwd)
    seconds = time.monotonic() - started
    out.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(out)  # served like make-tiny's checkpoints (bf16)
    for name in CARRIED:
        if (base / name).exists():
            shutil.copy2(base / name, out / name)
    shutil.rmtree(out / "trainer", ignore_errors=True)
    losses = [{"step": e["step"], "loss": e["loss"]} for e in trainer.state.log_history if "loss" in e]
    log = {"base": str(base), "export": str(export), "rows": len(dataset), "steps": trainer.state.global_step,
           "max_length": max_length, "steps_per_row": steps_per_row, "scheduler": scheduler,
           "learning_rate": learning_rate, "seed": seed, "seconds": round(seconds, 1), "losses": losses,
           "trainer": "trl.SFTTrainer", "assistant_only_loss": True}
    (out / "train_log.json").write_text(json.dumps(log, indent=2))
    return log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolfabric_server.flywheel.train",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("export", help="a `toolfabric export --format trl` folder")
    parser.add_argument("base", help="the base checkpoint (make-tiny's, or a real model's directory)")
    parser.add_argument("out", help="where the trained checkpoint goes")
    parser.add_argument("--max-steps", type=int, default=-1, help="optimizer steps (default: --epochs over the data)")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="high: the tiny model starts from random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-length", type=int, help="truncate rows to this many tokens, keeping the start (TRL's "
                                                         "keep_start: the system prompt, question and first steps)")
    parser.add_argument("--steps-per-row", type=int, default=0, help="train on each trajectory's first N steps "
                                                                       "(0: all of it)")
    parser.add_argument("--scheduler", default="constant_with_warmup", help="transformers' lr_scheduler_type")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    log = train(Path(args.export), Path(args.base), Path(args.out), max_steps=args.max_steps, epochs=args.epochs,
                learning_rate=args.learning_rate, seed=args.seed, max_length=args.max_length,
                steps_per_row=args.steps_per_row, scheduler=args.scheduler, threads=args.threads)
    first, last = log["losses"][0]["loss"], log["losses"][-1]["loss"]
    print(f"trained {log['steps']} steps on {log['rows']} rows in {log['seconds']}s: loss {first:.3f} -> {last:.3f}; "
          f"checkpoint {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
