"""Errors of the model service::

    FabricError
    └── ModelUnavailable    the model service failed, closed the stream or went silent
"""

from __future__ import annotations

from services.common.errors import FabricError


class ModelUnavailable(FabricError):
    """The model service failed, closed the stream or went silent; the message is one line saying which."""
