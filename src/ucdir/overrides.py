"""The command line of every ``python -m ucdir.<command>``, checked before Hydra reads it.

Hydra's override grammar rejects an unquoted value with a space that the shell split in two
(``input=my photos/a.png`` → ``photos/a.png`` has no ``=``) or with characters of the grammar
(``( ) [ ] { } , =``), with a lexer message that does not say what to do. `run_command` reports
that message with the fix: quote the value for Hydra and the whole override for the shell.

`reports_user_errors`, applied to every command's task function under ``@hydra.main``, prints an
error the user made (a bad option, a missing file: `USER_ERRORS`) as one ``Error: <message>`` on
stderr with exit status 1, without Hydra's traceback (set ``HYDRA_FULL_ERROR=1`` to get it);
any other exception, a programming error, keeps its traceback.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import InstantiationException, OverrideParseException

T = TypeVar("T")

USER_ERRORS: tuple[type[Exception], ...] = (
    ValueError,  # bad options and files, and our subclasses (ImageTooLargeError, ...)
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)
"""Exceptions that are the user's to fix, printed as one line by `reports_user_errors` (also
`ucdir.metrics`' missing or corrupt weights files)."""

QUOTING_HINT = (
    "A value with spaces or any of ( ) [ ] { } , = must be quoted for Hydra, and the whole "
    """override for the shell, e.g. 'input="my photos/a.png"'"""
)


class OverrideSyntaxError(ValueError):
    """A command-line override Hydra cannot parse; the message says how to quote it."""


def _overrides(argv: Sequence[str]) -> list[str]:
    """The `key=value` arguments of a Hydra command line (its options left out)."""
    from hydra._internal.utils import get_args_parser  # Hydra's own command line (hydra-core 1.3)

    parser = get_args_parser()
    parser.exit_on_error = False
    try:
        args, _ = parser.parse_known_args(list(argv))
    except argparse.ArgumentError:
        return []  # a bad option: Hydra reports it itself
    return list(args.overrides or [])


def check_overrides(argv: Sequence[str]) -> None:
    """Parses the overrides of a command line as Hydra will.

    Raises:
        OverrideSyntaxError: naming the override, Hydra's message and the quoting that fixes it.
    """
    overrides = _overrides(argv)
    try:
        OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as err:
        raise OverrideSyntaxError(
            f"cannot parse the override {err.override!r}: {err.message}\n{QUOTING_HINT}"
        ) from None


def run_command(main: Callable[[], Any]) -> None:
    """Runs a ``@hydra.main`` function once the overrides of `sys.argv` parse; otherwise ends the
    process with status 1 and `OverrideSyntaxError`'s message on stderr, before Hydra starts."""
    try:
        check_overrides(sys.argv[1:])
    except OverrideSyntaxError as err:
        raise SystemExit(f"Error: {err}") from None
    main()


def user_error(err: BaseException) -> BaseException | None:
    """The user error `err` is (or, for Hydra's `InstantiationException`, was caused by), else
    None."""
    # imported here: the metrics package is heavy and only some commands use it
    from ucdir.metrics.weights import CorruptWeightsError, MetricUnavailableError

    errors = (*USER_ERRORS, MetricUnavailableError, CorruptWeightsError)
    if isinstance(err, InstantiationException) and isinstance(err.__cause__, errors):
        return err.__cause__
    return err if isinstance(err, errors) else None


def reports_user_errors(task: Callable[[Any], T]) -> Callable[[Any], T]:
    """Wraps a command's task function (below ``@hydra.main``, whose own report would print a
    traceback): a `USER_ERRORS` exception ends the process with ``Error: <message>`` on stderr
    and status 1; with ``HYDRA_FULL_ERROR=1``, and for any other exception, it propagates."""

    @functools.wraps(task)
    def reported(cfg: Any) -> T:
        try:
            return task(cfg)
        except Exception as err:
            user = user_error(err)
            if user is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            raise SystemExit(f"Error: {user}") from None

    return reported
