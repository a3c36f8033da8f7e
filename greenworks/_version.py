"""The one place the version of greenworks is written."""

__version__ = "0.2.0.dev0"
