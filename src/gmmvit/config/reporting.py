"""The one-line error policy: a user error (``gmmvit.errors``) or a config the schema refuses ends
in one line naming the key or file and the fix, with exit code 2, never a traceback."""

from __future__ import annotations

import sys

from gmmvit.config.refusals import COMMAND_LINE_ERRORS, explain
from gmmvit.errors import USER_ERRORS, cause_of, fail


def user_error(exc: BaseException):
    """The user error behind ``exc`` (Hydra's instantiate wraps them), or None."""
    return cause_of(exc, USER_ERRORS)


def report_config_errors_in_one_line() -> None:
    """A command line Hydra refuses (a value the schema refuses, a mistyped key, an override it cannot
    parse, overrides that cannot combine: ``gmmvit.config.refusals.explain``) ends in one line naming
    the key or override and the fix, with exit code 2.

    Hydra reports every error of its command line through ``hydra._internal.utils.run_and_report``
    (several lines, exit code 1); this wraps it so that those refusals are caught first. Any other
    error keeps Hydra's own report.
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
                line = explain(exc, sys.argv[1:])
                if line is None:
                    raise
                fail(line)
        return report(run)

    run_and_report.gmmvit = True
    hydra_utils.run_and_report = run_and_report


def guarded(fn, *args, **kwargs):
    """``fn``'s user errors, and Hydra's refusals of the overrides it was given (``make paper
    ARGS='mask=none,gmm,'`` parses them before composing), end in the policy's one line."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        cause = user_error(exc)
        if cause is not None:
            fail(str(cause))
        line = explain(exc) if isinstance(exc, COMMAND_LINE_ERRORS) else None
        if line is None:
            raise
        fail(line)
