"""A scripted policy: replays model steps given in the question, for testing loops through Triton.

The question is JSON `{"script": ["<step 1 text>", "<step 2 text>", …]}`; the k-th model call of a
trajectory emits the k-th entry verbatim (malformed output included, which is the point). An entry
may be `{"text": …, "chunk_delay_s": 0.05}` to stream slowly (for cancellation tests), or
`{"fail": "message"}` to make the model service fail on that step, or `{"recall": true}` to answer with
the earlier turns of the conversation it was shown, as JSON `[[role, text], …]`.
"""

from __future__ import annotations

import json

from toolfabric_server.model.baseline.policy import read_situation


def next_step(prompt: str) -> str | tuple[str, float]:
    situation = read_situation(prompt)
    try:
        script = json.JSONDecoder().raw_decode(situation.question)[0]["script"]  # notes may follow the JSON
    except (json.JSONDecodeError, KeyError, TypeError):
        return '<answer>scripted model: the question must be JSON {"script": [step texts]}</answer>'
    if situation.steps_done >= len(script):
        return "<answer>script exhausted</answer>"
    entry = script[situation.steps_done]
    if isinstance(entry, dict) and entry.get("recall"):
        # Tags inside the JSON are escaped (\u003c) so the earlier turns' own tags cannot close this answer.
        recalled = json.dumps(situation.earlier, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
        return f"<answer>{recalled}</answer>"
    if isinstance(entry, dict) and "fail" in entry:  # the model service itself fails on this step
        raise RuntimeError(str(entry["fail"]))
    if isinstance(entry, dict):
        return str(entry.get("text", "")), float(entry.get("chunk_delay_s", 0.0))
    return str(entry)
