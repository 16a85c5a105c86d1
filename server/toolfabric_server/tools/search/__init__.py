"""Search service: text_search and image_search over providers and the local index."""
