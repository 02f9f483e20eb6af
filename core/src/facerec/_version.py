"""Versions, importable without torch."""

__version__ = "1.0.0"
#: Core's plugin API version; a plugin built for another major version is refused.
API_VERSION = "1.0"
