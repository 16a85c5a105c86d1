"""Triton python-backend entry point: a reference-match judge replying in the BrowseComp grading format."""

import re
import string

from toolfabric_server.model.python_backend import StreamingPolicyModel

_FIELD = re.compile(r"\[(question|response|correct_answer)\]: (.*?)(?=\n\n|$)", re.DOTALL)


def _norm(text: str) -> str:
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def judge(prompt: str) -> str:
    fields = dict(_FIELD.findall(prompt))
    response = fields.get("response", "").strip()
    if not response:
        return "The response is empty, so there is nothing to grade."
    correct = fields.get("correct_answer", "")
    accepted = [correct.split(" (also accepted: ")[0]]
    if "(also accepted: " in correct:
        accepted += correct.split("(also accepted: ", 1)[1].rstrip(")").split("; ")
    hit = any(_norm(a) and f" {_norm(a)} " in f" {_norm(response)} " for a in accepted)
    return (f"extracted_final_answer: {response[:200]}\n\nreasoning: the response "
            f"{'contains' if hit else 'does not contain'} the correct answer.\n\n"
            f"correct: {'yes' if hit else 'no'}\n\nconfidence: 100")


class TritonPythonModel(StreamingPolicyModel):
    policy = staticmethod(judge)
