"""Secrets a locked gateway must not run with: with auth on, the blob-URL secret must be set and long.

The blob port trusts any URL signed with `TOOLFABRIC_BLOB_URL_SECRET`; with the shipped default (or
a short value) anyone can sign one for any image. The gateway refuses to start, in one line naming
the setting, rather than serve with it.
"""

from __future__ import annotations

from toolfabric_server.common.errors import ConfigurationError
from toolfabric_server.common.settings import CommonSettings
from toolfabric_server.gateway.settings import AuthSettings

# The shipped default of TOOLFABRIC_BLOB_URL_SECRET (common/settings.py, CommonSettings), refused with auth on.
DEFAULT_BLOB_SECRET = "change-me-in-production"  # noqa: S105
MIN_SECRET_CHARS = 32


def check(auth: AuthSettings, common: CommonSettings) -> None:
    if not auth.required:
        return
    secret = common.blob_url_secret.get_secret_value()
    if secret == DEFAULT_BLOB_SECRET or len(secret) < MIN_SECRET_CHARS:
        why = "is the shipped default" if secret == DEFAULT_BLOB_SECRET else f"is only {len(secret)} characters"
        raise ConfigurationError(f"TOOLFABRIC_BLOB_URL_SECRET {why}: with TOOLFABRIC_AUTH_REQUIRED=true set it to "
                                 f"a random secret of at least {MIN_SECRET_CHARS} characters (it signs image URLs)")
