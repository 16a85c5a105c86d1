"""The scripted policy (tests/model_repository/scripted.py) answering with token ids, for the gateway's Triton client.

`ScriptedTokenModel` speaks the fabric's token extensions: it takes `input_ids` as its prompt when sent
(token-in; else it tokenises `text_input` itself) and answers with the script's text, its ids (the tokenizer's,
then <|im_end|> as a model ending its turn), a logprob per id and the prompt's image placeholder count.
`OfficialLogprobsModel` speaks only what Triton's official vLLM backend says of tokens: with `return_logprobs`
its `logprobs` output is JSON, one {id: {logprob, rank, decoded_token}} per token.
"""

from __future__ import annotations

import json

import numpy as np
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

from tests.model_repository.scripted import next_step
from toolfabric_server.model.python_backend import StreamingPolicyModel, _scalar


def _tensor(request, name: str):  # type: ignore[no-untyped-def]
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy().reshape(-1)


class ScriptedTokenModel(StreamingPolicyModel):
    """Each request on its own thread (StreamingPolicyModel.execute), answered by `_serve` below."""

    official = False

    def initialize(self, args: dict) -> None:
        super().initialize(args)
        path = json.loads(args["model_config"])["parameters"]["tokenizer"]["string_value"]
        self.tokenizer = Tokenizer.from_file(path)
        self.end = self.tokenizer.token_to_id("<|im_end|>")
        self.pad = self.tokenizer.token_to_id("<|image_pad|>")

    def _serve(self, request) -> None:  # type: ignore[no-untyped-def]
        sender = request.get_response_sender()
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
        try:
            prompt = _scalar(request, "text_input", "")
            given = _tensor(request, "input_ids")
            ids = [int(v) for v in given] if given is not None else self.tokenizer.encode(
                prompt, add_special_tokens=False).ids
            step = next_step(prompt)
            text = step if isinstance(step, str) else step[0]
            completion = [*self.tokenizer.encode(text, add_special_tokens=False).ids, self.end]
            wants_ids = _tensor(request, "return_token_ids")
            out = [pb_utils.Tensor("text_output", np.array([text.encode()], dtype=np.object_)),
                   pb_utils.Tensor("num_output_tokens", np.array([len(completion)], dtype=np.uint32))]
            wants_logprobs = _tensor(request, "return_logprobs")
            if self.official and wants_logprobs is not None and bool(wants_logprobs[0]):
                entries = [{str(t): {"logprob": -0.5, "rank": 1, "decoded_token": self.tokenizer.id_to_token(t)}}
                           for t in completion]
                out.append(pb_utils.Tensor("logprobs", np.array([json.dumps(entries).encode()], dtype=np.object_)))
            if not self.official and wants_ids is not None and bool(wants_ids[0]):
                out += [pb_utils.Tensor("prompt_token_ids", np.array(ids, dtype=np.int64)),
                        pb_utils.Tensor("output_token_ids", np.array(completion, dtype=np.int64)),
                        pb_utils.Tensor("output_logprobs", np.full(len(completion), -0.5, dtype=np.float32))]
            sender.send(pb_utils.InferenceResponse(output_tensors=out))
            tail = [pb_utils.Tensor("text_output", np.array([b""], dtype=np.object_)),
                    pb_utils.Tensor("finish_reason", np.array([b"stop"], dtype=np.object_)),
                    pb_utils.Tensor("num_input_tokens", np.array([len(ids)], dtype=np.uint32)),
                    *([] if self.official else
                      [pb_utils.Tensor("num_image_tokens", np.array([ids.count(self.pad)], dtype=np.int64))])]
            sender.send(pb_utils.InferenceResponse(output_tensors=tail), flags=final)
        except Exception as exc:  # reported to the client instead of killing the stub
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}")),
                        flags=final)


class OfficialLogprobsModel(ScriptedTokenModel):
    official = True
