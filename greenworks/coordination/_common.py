"""Helpers shared by the lock implementations."""

import os
import socket
import uuid

from greenworks._checks import is_real
from greenworks.exceptions import invalid_argument

__all__ = ["check_ttl", "new_holder_id"]


def new_holder_id():
    """Return a fresh ``host:pid:nonce`` id naming one lock instance in one process."""
    return "%s:%d:%s" % (socket.gethostname(), os.getpid(), uuid.uuid4().hex[:12])


def check_ttl(name, value, allow_none=False):
    """Return *value* as a float if it is a number ``> 0``, else raise `InvalidArgument`.

    :param str name: the argument's name, for the error message.
    :param bool allow_none: accept ``None`` (returned as is).
    """
    if value is None and allow_none:
        return None
    if not is_real(value) or not value > 0:
        raise invalid_argument(name, value, "a number of seconds > 0")
    return float(value)
