"""Chat templates (jinja, as tokenizers carry them) that render exactly what the fabric's dialects render.

`apply_chat_template` on a tiny model's tokenizer gives the same prompt string as the dialect's
`ChatTemplate.render` (model/chat_template.py), so a `vllm serve` chat endpoint, a trainer
and the fabric agree on the prompt. Qwen3-VL's has no default system turn; Qwen2.5-VL's adds
"You are a helpful assistant." when none is given. Tool results go in the role `tool`, wrapped as
Qwen's templates do. Assistant turns are wrapped in `{% generation %}` markers where TRL's training variant of
Qwen3-VL's template puts them (content, `<|im_end|>` and the `\n` after it), so a trainer's assistant-only loss
(TRL's `assistant_only_loss`) works on the tiny models as on the real ones; the markers render nothing.
"""

from __future__ import annotations

_CONTENT = (
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part or 'image_url' in part %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or 'video' in part %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
)
_TURNS = (
    "{% for message in messages %}"
    "{% if message['role'] == 'tool' %}"
    "<|im_start|>user\n<tool_response>\n" + _CONTENT + "\n</tool_response><|im_end|>\n"
    "{% elif message['role'] == 'assistant' %}"
    "<|im_start|>assistant\n{% generation %}" + _CONTENT + "<|im_end|>\n{% endgeneration %}"
    "{% else %}"
    "<|im_start|>{{ message['role'] }}\n" + _CONTENT + "<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

QWEN3_VL = _TURNS
QWEN25_VL = (
    "{% if messages and messages[0]['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}" + _TURNS
)
