"""The errors a user can fix: each message names the key or file and the fix, and the entry point
prints it as one line with exit code 2 (``gmmvit.config.reporting``). Every layer raises them, so
they live at the bottom of the package."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration that cannot work; its message names the fix."""


class DatasetUnavailable(RuntimeError):
    """The dataset is neither on disk nor downloadable; the message says how to get it."""


class CheckpointError(RuntimeError):
    """No usable checkpoint where one should be; the message says what to do."""


USER_ERRORS = (ConfigError, DatasetUnavailable, CheckpointError)
