"""Errors of the model service::

    FabricError
    ├── ModelUnavailable      the model service failed, closed the stream or went silent
    └── TokenizerUnavailable  a model's tokenizer (its checkpoint's tokenizer.json) could not be loaded
"""

from __future__ import annotations

from toolfabric_server.common.errors import FabricError


class ModelUnavailable(FabricError):
    """The model service failed, closed the stream or went silent; the message is one line saying which."""


class TokenizerUnavailable(FabricError):
    """A model's tokenizer or image processor config could not be read from its checkpoint directory."""
