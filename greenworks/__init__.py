"""greenworks: a green-thread runtime for gevent applications."""

from greenworks._version import __version__

__all__ = ["__version__"]
