"""The package version (a module of its own, so that what records it imports no higher layer)."""

__version__ = "0.1.0"
