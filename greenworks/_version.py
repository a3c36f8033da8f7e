"""The one place the version of greenworks is written."""

__version__ = "0.1.0.dev0"
