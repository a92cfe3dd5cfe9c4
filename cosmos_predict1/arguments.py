"""The command-line parser of every script: argparse with one-line argument errors and a ``--help`` that shows
defaults.

An argument error is one line on stderr that names the option, the value and what is accepted, then exit code 2,
without argparse's usage block::

    error: --save_video maybe: expected true or false; see --help
    error: unrecognized option --nmu_steps (did you mean --num_steps?); see --help

Imports nothing heavy: ``--help`` and argument errors answer before any model library loads.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NoReturn

from cosmos_predict1.boundary import one_line

EXPECTED = {int: "expected an integer", float: "expected a number"}  # what a failed int() or float() accepts
NARGS = {  # argparse's words for a missing value, as they read for an option
    "expected one argument": "expected one value",
    "expected at most one argument": "expected at most one value",
    "expected at least one argument": "expected one or more values",
}


def str2bool(value: str | bool) -> bool:
    """The original's boolean option values: yes/true/t/y/1 and no/false/f/n/0, any case."""
    if isinstance(value, bool):
        return value
    if value.lower() in ("yes", "true", "t", "y", "1"):
        return True
    if value.lower() in ("no", "false", "f", "n", "0"):
        return False
    raise argparse.ArgumentTypeError("expected true or false")


METAVARS = {int: "N", float: "X", str2bool: "{true,false}", Path: "PATH"}  # by type, where no metavar is given


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` as this project prints it: the description as written, a short usage line (the required options
    and ``[options]``), short metavars by type, and each option's default where it says something."""

    def add_usage(
        self,
        usage: str | None,
        actions: Iterable[argparse.Action],
        groups: Iterable[argparse._MutuallyExclusiveGroup],
        prefix: str | None = None,
    ) -> None:
        actions = list(actions)
        if usage is None:
            required = [self._with_value(action) for action in actions if action.required and action.option_strings]
            usage = " ".join(["%(prog)s", *required, "[options]"])
        super().add_usage(usage, actions, groups, prefix)

    def _with_value(self, action: argparse.Action) -> str:
        """An option as the usage line writes it: ``--input_folder INPUT_FOLDER``."""
        return f"{action.option_strings[0]} {self._format_args(action, self._get_default_metavar_for_optional(action))}"

    def _get_default_metavar_for_optional(self, action: argparse.Action) -> str:
        return METAVARS.get(action.type) or super()._get_default_metavar_for_optional(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        """The help text and ``(default: …)``, except for flags, defaults of None or "" (noise there) and help texts
        that state their default themselves.

        argparse asks only for options with a help text: those without one show no default either."""
        text, default = action.help, action.default
        if action.nargs == 0 or default in (None, "", argparse.SUPPRESS) or "default:" in text:
            return text
        if isinstance(default, bool):
            shown = str(default).lower()
        elif isinstance(default, list | tuple):
            shown = " ".join(map(str, default))
        else:
            shown = str(default)
        return f"{text} (default: {shown.replace('%', '%%')})"


class Parser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose every argument error is one line (see the module's docstring).

    Bad values are worded in argparse's value hooks ``_get_value`` and ``_check_value`` (the same from Python 3.10 to
    3.13), which know the option and the text given; every other error reaches ``error`` as argparse words it."""

    def __init__(self, description: str) -> None:
        super().__init__(description=description, formatter_class=HelpFormatter, exit_on_error=False)

    def parse_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            self.error(self._unrecognized(extras[0]))
        return parsed

    def parse_known_args(
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        try:
            return super().parse_known_args(args, namespace)
        except argparse.ArgumentError as err:  # argument_name None: the message names the option itself
            message = NARGS.get(err.message, err.message)
            self.error(message if err.argument_name is None else f"{err.argument_name}: {message}")

    def error(self, message: str) -> NoReturn:
        """Print ``error: <message>; see --help`` as one line on stderr and exit with code 2."""
        print(one_line(f"error: {message}; see --help"), file=sys.stderr)
        sys.exit(2)

    def _get_value(self, action: argparse.Action, text: str) -> object:
        """``text`` converted by the option's type; a failure names the option, the value and what is accepted."""
        try:
            return super()._get_value(action, text)
        except argparse.ArgumentError as err:  # an ArgumentTypeError's own words, or argparse's "invalid int value"
            accepted = EXPECTED.get(action.type, err.message)
            raise argparse.ArgumentError(None, f"{option_name(action)} {text}: {accepted}") from None

    def _check_value(self, action: argparse.Action, value: object) -> None:
        if action.choices is not None and value not in action.choices:
            accepted = ", ".join(map(str, action.choices))
            raise argparse.ArgumentError(None, f"{option_name(action)} {value}: expected one of {accepted}")

    def _unrecognized(self, argument: str) -> str:
        """The problem with the first argument no option took: an unknown option (with the closest known one), or a
        value that follows no option."""
        if not argument.startswith("-") or argument[1:2].isdigit():  # argparse takes -5 for a value
            return f"unexpected value {argument}: every value must follow its option"
        name = argument.split("=", 1)[0]
        close = difflib.get_close_matches(name, self._option_string_actions, n=1)
        return f"unrecognized option {name}" + (f" (did you mean {close[0]}?)" if close else "")


def option_name(action: argparse.Action) -> str:
    """How an error names the option: its long form (``--num_steps``)."""
    return action.option_strings[-1] if action.option_strings else action.dest
