"""The RL export's token ids and loss mask against what TRL's own tokenisation makes of the same trajectory.

`python -m toolfabric_server.flywheel.tokencheck EXPORT [BASE]` in the engine venv, on a folder exported with
`--format rl --format trl` from a real model's trajectories (the baseline policy records no ids). For every
`rl_tokens.jsonl` sample (segment 0) the `trl.jsonl` row of the same trajectory goes through TRL's collator
exactly as SFTTrainer would use it (DataCollatorForVisionLanguageModeling, assistant_only_loss): TRL's
input_ids and its loss mask (labels != -100) are compared with the export's `input_ids` and `loss_mask`.

Each difference is classified, because each has an owner:
- `trl_tail`: TRL's rendering ends with the `\\n` after the last `<|im_end|>`; the model never produced it.
- `newline_after_im_end` (mask): TRL trains the `\\n` after every assistant `<|im_end|>` (its Qwen3-VL training
  template puts it inside `{% generation %}`), a token the model never samples (generation stops at
  `<|im_end|>`); the fabric's mask, 1 only on sampled ids, is the right one for RL.
- `fabric_im_end` (mask): a step cut short by max_tokens or a stop string ends with the `<|im_end|>` the fabric
  wrote; TRL trains it as the model's, the fabric does not.
- `ids`: the ids differ at a position: TRL re-tokenises the text, the export has the ids the model sampled (a
  model's non-canonical tokens read back differently); the export is right, re-tokenising is the defect.
Writes EXPORT/tokencheck.json and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def compare(rl: dict[str, Any], trl_ids: list[int], trl_mask: list[int], im_end: int, newline: int) -> dict[str, Any]:
    ids, mask = rl["input_ids"], rl["loss_mask"]
    n = min(len(ids), len(trl_ids))
    first_id_diff = next((i for i in range(n) if ids[i] != trl_ids[i]), None)
    kinds: Counter[str] = Counter()
    if len(trl_ids) > len(ids) and first_id_diff is None:
        kinds["trl_tail"] += len(trl_ids) - len(ids)
    upto = n if first_id_diff is None else first_id_diff  # masks compare where the ids agree
    for i in range(upto):
        if mask[i] == trl_mask[i]:
            continue
        if trl_mask[i] and ids[i] == newline and i and ids[i - 1] == im_end:
            kinds["newline_after_im_end"] += 1
        elif trl_mask[i] and ids[i] == im_end:
            kinds["fabric_im_end"] += 1
        else:
            kinds["other_mask"] += 1
    if first_id_diff is not None:
        kinds["ids"] += 1
    return {"trajectory_id": rl["trajectory_id"], "tokens": len(ids), "trl_tokens": len(trl_ids),
            "ids_equal": first_id_diff is None, "first_id_difference": first_id_diff,
            "masked_tokens": sum(mask), "trl_masked_tokens": sum(trl_mask[:len(ids)]), "differences": dict(kinds)}


def check(export: Path, base: Path) -> dict[str, Any]:
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    from toolfabric_server.flywheel.train import processor

    export = export.resolve()
    proc = processor(base.resolve())
    collator = DataCollatorForVisionLanguageModeling(processor=proc, assistant_only_loss=True)
    tok = proc.tokenizer
    im_end, newline = tok.convert_tokens_to_ids("<|im_end|>"), tok.encode("\n", add_special_tokens=False)[0]
    rows = {json.loads(line)["id"]: json.loads(line) for line in (export / "trl.jsonl").read_text().splitlines()}
    samples = [json.loads(line) for line in (export / "rl_tokens.jsonl").read_text().splitlines()]
    results = []
    cwd = Path.cwd()
    os.chdir(export)  # image paths are relative to the export
    try:
        for rl in samples:
            if rl["segment"] != 0 or rl["trajectory_id"] not in rows:
                continue
            row = rows[rl["trajectory_id"]]
            out = collator([{"messages": row["messages"], "images": row["images"]}])
            trl_ids = out["input_ids"][0].tolist()
            trl_mask = (out["labels"][0] != -100).long().tolist()
            results.append(compare(rl, trl_ids, trl_mask, im_end, newline))
    finally:
        os.chdir(cwd)
    totals: Counter[str] = Counter()
    for r in results:
        totals.update(r["differences"])
    summary = {"samples": len(results), "ids_equal": sum(r["ids_equal"] for r in results),
               "masks_equal": sum(not r["differences"] or set(r["differences"]) == {"trl_tail"} for r in results),
               "differences": dict(totals), "per_sample": results}
    (export / "tokencheck.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolfabric_server.flywheel.tokencheck",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("export", help="a folder exported with --format rl --format trl")
    parser.add_argument("base", help="the checkpoint whose tokenizer and processor TRL uses")
    args = parser.parse_args(argv)
    s = check(Path(args.export), Path(args.base))
    print(f"{s['samples']} samples: ids equal in {s['ids_equal']}, masks equal (besides TRL's final newline) in "
          f"{s['masks_equal']}; differences {s['differences']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
