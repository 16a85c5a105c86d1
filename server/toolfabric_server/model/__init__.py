"""Model service: the Triton client, chat templates, and the Triton model repository."""
