"""One module per untrusted-bytes boundary; each defines `fuzz_one(data: bytes) -> None`.

A target returns normally for any input the boundary handles as documented (including the
documented errors) and raises for anything else: an undocumented exception escapes, or an
`AssertionError` states which promise the input broke. `INSTRUMENT` names the packages whose
Python code atheris instruments for coverage when the target runs under the fuzzer.
"""

NAMES = ("dialect", "channels", "run_request", "images", "web_page", "web_pdf", "chat", "step", "doors")
