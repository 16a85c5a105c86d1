"""Plan-and-execute: how a planner's `<plan>` becomes tool calls and the model's next instructions.

R1V4's planner (`skywork/r1v4-vl-planner-lite`) replies with 2 to 10 steps `{"description", "tool_name",
"parameters": {query | image_path | url}}`; later steps name earlier results with placeholders such as
"[Person from Step 1]", and the last step is a `none` verification. Executed (RunRequest.execute_plan), each
step is one loop step, in order:
- a step whose parameters hold no placeholder is run by the fabric as the plan wrote it (the first always is);
- a step with placeholders goes to the model, shown the results so far, to write that call with them filled
  (only the model can tell which result "[Person from Step 1]" means);
- the `none` step asks the model for the answer from the results; the ordinary loop goes on from there (if the
  model wants another look first, it may call tools within the budgets left).
"""

from __future__ import annotations

import json
import re
from typing import Any

from toolfabric_server.model.chat_template import ImagePart, Message
from toolfabric_server.model.dialects import Dialect, RawCall

PLACEHOLDER = re.compile(r"\[[^\[\]]*\bsteps?\s*\d+[^\[\]]*\]", re.IGNORECASE)
# plan tool → (the parameter it takes, the tool's list argument for it)
_ARGUMENTS = {"text_search": ("query", "queries"), "image_search": ("image_path", "image_paths"),
              "web_visit": ("url", "urls")}


def placeholders(step: dict[str, Any]) -> list[str]:
    """The placeholders in a plan step's parameters, in order ("[Person from Step 1]", …)."""
    return PLACEHOLDER.findall(json.dumps(step.get("parameters", {}), ensure_ascii=False))


def call_of(step: dict[str, Any]) -> RawCall:
    """The tool call a plan step stands for, as the model would have written it (the tool's own argument
    names: the plan's `query` is text_search's `queries`). A parameter the plan left out is left out here too,
    so the tool's validation says what is missing."""
    tool = step["tool_name"]
    parameters = step.get("parameters") or {}
    single, listed = _ARGUMENTS[tool]
    arguments: dict[str, Any] = {}
    if single in parameters:
        value = parameters[single]
        arguments[listed] = value if isinstance(value, list) else [value]
    if tool == "web_visit" and step.get("description"):
        arguments["goal"] = step["description"]
    return RawCall(tool, arguments)


def fill_instruction(number: int, total: int, step: dict[str, Any], dialect: Dialect) -> str:
    """What the model reads before a step it must complete: which call, with which placeholders filled."""
    think = dialect.think_tag
    listed = _ARGUMENTS[step["tool_name"]][1]
    return (f"Plan step {number} of {total}: {step.get('description', '')}\n"
            f"Call {step['tool_name']} with these parameters, replacing the placeholders "
            f"({', '.join(placeholders(step))}) with what the earlier steps found: "
            f"{json.dumps(step.get('parameters', {}), ensure_ascii=False)}\n"
            f'Reply with <{think}>…</{think}> then <tool_call>{{"name": "{step["tool_name"]}", "arguments": '
            f'{{"{listed}": […]}}}}</tool_call>.')


def answer_instruction(number: int, total: int, step: dict[str, Any], dialect: Dialect) -> str:
    """What the model reads at the verification step: answer from the results (in the dialect's tags)."""
    think = dialect.think_tag
    return (f"Plan step {number} of {total} (verification): {step.get('description', '')}\n"
            "Check the results above against the question and give the final answer as "
            f"<{think}>…</{think}>{dialect.render_answer('…')}.")


def add(messages: list[Message], parts: list[str | ImagePart]) -> None:
    """Observations of a step the fabric ran join the user turn before it, if there is one: the model reads one
    user turn between two of its own."""
    if messages and messages[-1].role == "user":
        messages[-1] = Message("user", [*messages[-1].parts, *parts])
    else:
        messages.append(Message("user", parts))


def tell(messages: list[Message], instruction: str) -> None:
    """An instruction, after the observations the model has not answered yet."""
    add(messages, ["\n" + instruction if messages and messages[-1].role == "user" else instruction])
