"""The one-line error policy: a user error (``gmmvit.errors``) or a config the schema refuses ends
in one line naming the key or file and the fix, with exit code 2, never a traceback."""

from __future__ import annotations

from gmmvit.config.refusals import explain
from gmmvit.errors import USER_ERRORS, fail


def user_error(exc: BaseException):
    """The user error behind ``exc`` (Hydra's instantiate wraps them), or None."""
    while exc is not None:
        if isinstance(exc, USER_ERRORS):
            return exc
        exc = exc.__cause__
    return None


def report_config_errors_in_one_line() -> None:
    """A config that fails the schema (gmmvit.config.schema) ends in one line naming the key, the
    value and what the key takes, with exit code 2.

    Hydra reports every error of its command line through ``hydra._internal.utils.run_and_report``
    (several lines, exit code 1); this wraps it so that schema refusals are caught first. Any other
    error (an unknown config group option, for one) keeps Hydra's own message.
    """
    import hydra._internal.utils as hydra_utils

    report = hydra_utils.run_and_report
    if getattr(report, "gmmvit", False):
        return

    def run_and_report(func):
        def run():
            try:
                return func()
            except Exception as exc:
                line = explain(exc)
                if line is None:
                    raise
                fail(line)
        return report(run)

    run_and_report.gmmvit = True
    hydra_utils.run_and_report = run_and_report


def guarded(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        cause = user_error(exc)
        if cause is None:
            raise
        fail(str(cause))
