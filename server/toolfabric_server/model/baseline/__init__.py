"""A deterministic baseline policy served by Triton where no GPU model runs (not a model)."""
