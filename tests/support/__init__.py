"""Helpers the tests share (real servers and receivers, no mocks)."""
