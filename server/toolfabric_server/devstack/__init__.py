"""Developer tooling: the embedded stack behind `toolfabric up` and the helpers that start its processes.

Runtime code never imports this package (the import contract in pyproject.toml keeps it so)."""
