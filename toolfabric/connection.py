"""How the clients reach a gateway: TLS or plaintext, and the API key sent with every call.

`api_key` defaults to `$TOOLFABRIC_API_KEY`; TLS is on when asked for, or when root certificates are
given (as bytes, or as a PEM file in `$TOOLFABRIC_TLS_CA_FILE`); the system roots are used otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple

import grpc

Metadata = Tuple[Tuple[str, str], ...]


def credentials(tls: bool, root_certificates: Optional[bytes]) -> Optional[grpc.ChannelCredentials]:
    ca_file = os.environ.get("TOOLFABRIC_TLS_CA_FILE")
    if root_certificates is None and ca_file:
        root_certificates = Path(ca_file).read_bytes()
    if tls or root_certificates is not None:
        return grpc.ssl_channel_credentials(root_certificates)
    return None


def auth_metadata(api_key: Optional[str]) -> Metadata:
    key = api_key if api_key is not None else os.environ.get("TOOLFABRIC_API_KEY", "")
    return (("authorization", f"Bearer {key}"),) if key else ()
