"""The `toolfabric` command line."""
