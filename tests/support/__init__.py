"""Helpers shared by several test files: the Hub stand-in, DDP helpers, tiny-run settings."""
