"""Exceptions raised by vidprop's library code.

Every error a user can cause (bad files, bad settings, an unloadable model)
is a :class:`VidpropError`; the CLI prints its message on one line and exits
with a non-zero status.  Anything else is a bug.
"""

from __future__ import annotations

__all__ = [
    "VidpropError",
    "InputError",
    "ConfigError",
    "ModelLoadError",
    "OutputExistsError",
    "OutputError",
    "WriteError",
]


class VidpropError(Exception):
    """Base class of the errors a user can cause and fix."""

    exit_code = 2


class InputError(VidpropError):
    """An input file or folder is missing, unreadable or malformed."""


class ConfigError(VidpropError):
    """A setting or a preset is invalid."""


class ModelLoadError(VidpropError):
    """A model id or folder could not be loaded."""


class OutputExistsError(VidpropError):
    """The output location already holds results and overwriting was not asked for."""


class OutputError(VidpropError):
    """The output location cannot be written (a file where a folder is needed, no permission, ...)."""


class WriteError(OutputError):
    """An output could not be written while writing it (a full disk, ...); nothing partial is left."""
