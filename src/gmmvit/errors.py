"""The errors a user can fix: each message names the key or file and the fix, and the entry point
prints it as one line with exit code 2 (``fail``: through ``one_line_errors`` for a ``python -m``
command, ``gmmvit.config.reporting`` for ``src/train.py``). Every layer raises them, so they and the
one way of printing them live at the bottom of the package."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Callable, NoReturn, Optional


class UserError(Exception):
    """An error whose message is its one line, wherever it was raised. One raised in a DataLoader
    worker process reaches the main process rebuilt by torch from the worker's whole traceback
    (``Caught X in DataLoader worker process N.\nOriginal Traceback ...``); its message is then the
    line the worker raised, the traceback's last ``module.X: message`` line."""

    def __init__(self, message: str = ""):
        super().__init__(self._raised_line(str(message)))

    @classmethod
    def _raised_line(cls, message: str) -> str:
        if not (message.startswith(f"Caught {cls.__name__} ") and "\nOriginal Traceback" in message):
            return message
        prefix = f"{cls.__module__}.{cls.__qualname__}: "
        raised = [line[len(prefix):] for line in message.splitlines() if line.startswith(prefix)]
        return raised[-1] if raised else message


class ConfigError(UserError, ValueError):
    """A configuration that cannot work; its message names the fix."""


class DatasetUnavailable(UserError, RuntimeError):
    """The dataset is neither on disk nor downloadable, or its files are damaged; the message says how
    to get them."""


class CheckpointError(UserError, RuntimeError):
    """No usable checkpoint where one should be; the message says what to do."""


USER_ERRORS = (ConfigError, DatasetUnavailable, CheckpointError)


def cause_of(exc: Optional[BaseException], kinds) -> Optional[BaseException]:
    """The first of ``exc`` and its causes that is one of ``kinds``, or None: Hydra's instantiate and
    composition wrap the error that says what is wrong."""
    while exc is not None and not isinstance(exc, kinds):
        exc = exc.__cause__
    return exc


def fail(message: str) -> NoReturn:
    """The policy's one line, ``gmmvit: error: <message>``, and exit code 2."""
    print(f"gmmvit: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


class CommandLine(argparse.ArgumentParser):
    """An entry point's parser whose refusals are the policy's one line (argparse prints usage first)."""

    def error(self, message: str) -> NoReturn:
        fail(f"{self.prog}: {message} (see --help)")


def one_line_errors(main: Callable[..., int]) -> Callable[..., int]:
    """A ``python -m`` entry point's ``main``, whose user errors end in the policy's one line and exit 2:
    every command reports them the same way, whatever layer raised them. Output piped into a reader
    that stops early (``make table | head``) ends the command quietly: the reader has what it wanted."""

    @functools.wraps(main)
    def guarded_main(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except USER_ERRORS as exc:
            fail(str(exc))
        except BrokenPipeError:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail too
            return 0

    return guarded_main


class _ReaderMayLeave:
    """A text stream whose reader may go away (``python src/train.py | head``): from the write that
    finds the pipe closed on, its file descriptor is /dev/null, so what the process prints is dropped
    and the process itself goes on (a training would otherwise fail on its next line of progress)."""

    def __init__(self, stream):
        self._stream = stream

    def _reader_left(self) -> None:
        os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._reader_left()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._reader_left()
            self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def survive_a_reader_leaving() -> None:
    """Standard output and error of a process that must finish its work whoever reads them."""
    sys.stdout, sys.stderr = _ReaderMayLeave(sys.stdout), _ReaderMayLeave(sys.stderr)

