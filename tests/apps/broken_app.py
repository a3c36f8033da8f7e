"""A module that fails on import, for the ``greenworks run`` error message tests."""

import not_a_real_dependency_of_greenworks  # noqa: F401
