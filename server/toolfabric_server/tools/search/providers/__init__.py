"""Search providers: Serper (Google web, images, Lens), SearXNG (JSON API), the local index."""

from toolfabric_server.tools.search.providers.base import Answer, ImageQuery, Provider

__all__ = ["Answer", "ImageQuery", "Provider"]
