"""The errors of the config checks: an unknown key (naming the key, the section and the allowed keys)
and a bad value (naming the key, what is expected and what was given)."""

from __future__ import annotations

from typing import Iterable


class UnknownKeyError(KeyError, TypeError):
    """A config section has a key that nothing reads.

    Both a `KeyError` (a missing entry in a table of allowed keys) and a `TypeError` (what an
    unexpected keyword argument raises), so callers of either kind catch it.
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigValueError(ValueError):
    """A config value (or a command-line override) that cannot be used; the one-line message names the key."""


def check_keys(keys: Iterable[str], allowed: Iterable[str], where: str) -> None:
    """Raise `UnknownKeyError` if `keys` has any key not in `allowed`.

    Args:
        keys: the keys given (e.g. a config section's).
        allowed: the keys that section accepts.
        where: the section, as the user writes it (`model.files`, `datasets.x`, a file name).
    """
    allowed = set(allowed)
    unknown = sorted(set(keys) - allowed)
    if unknown:
        raise UnknownKeyError(f"unknown key(s) {unknown} in {where}; allowed: {sorted(allowed)}")
