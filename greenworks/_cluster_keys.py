"""
Task identity across processes, and rendezvous hashing: which live member owns a key.

Kept apart from ``cluster.py`` because both are pure functions every member
must compute identically, whatever its process, hash seed or Python version.
"""

import dataclasses
import enum
import hashlib
from collections.abc import Iterable
from typing import Any

from greenworks.exceptions import invalid_argument

__all__ = ["default_key", "member_weight", "rendezvous_owner"]

_LEAVES = (str, int, float, bytes, bool, type(None), enum.Enum)
_MAX_DEPTH = 8
# dataclass type -> names of the fields its repr shows.
_FIELDS: dict[type, tuple[str, ...]] = {}


def _stable(value: Any, depth: int) -> bool:
    if isinstance(value, _LEAVES):
        return True
    if depth >= _MAX_DEPTH:
        return False
    if isinstance(value, tuple):
        return all(_stable(item, depth + 1) for item in value)
    cls = type(value)
    names = _FIELDS.get(cls)
    if names is None:
        if not dataclasses.is_dataclass(value) or isinstance(value, type):
            return False
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(value) if f.repr)
    return all(_stable(getattr(value, name), depth + 1) for name in names)


def default_key(task: Any) -> str:
    """Return ``repr(task)`` when that is the same in every process, else raise.

    Accepted: str, int, float, bool, None, bytes, enum members, and tuples
    and dataclasses made of those (nested up to 8 levels). Not accepted:
    sets (their order follows the per-process string hash), objects whose
    repr shows their address, anything else.

    :raises InvalidArgument: naming the task; pass ``key=`` to the runner.
    """
    if not _stable(task, 0):
        raise invalid_argument(
            "tasks",
            task,
            "a task with a stable key: str, int, tuple or dataclass of such values"
            " (or build the ClusterRunner with key=)",
        )
    return repr(task)


def member_weight(member: bytes, key: bytes) -> bytes:
    # Bytes compare like the big-endian integers they spell.
    return hashlib.blake2b(member + b"\x00" + key, digest_size=8).digest()


def rendezvous_owner(members: Iterable[str], key: str) -> str | None:
    """Return the member rendezvous hashing gives *key* to (None without members).

    The same in every process and Python version: ``blake2b`` of the member
    id and the key; ties (impossible in practice) go to the smaller id.
    """
    raw = key.encode("utf-8")
    best = None
    best_weight = b""
    for member in sorted(members):
        weight = member_weight(member.encode("utf-8"), raw)
        if weight > best_weight:
            best, best_weight = member, weight
    return best
