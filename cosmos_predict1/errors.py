"""The one error type for problems a user can fix (bad input, missing files, unsupported sizes).

The command-line entry points catch it and print its message as one line (exit code 2, no traceback), so the
message must say what is wrong, which file, and how to fix it.
"""


class UserError(Exception):
    """A problem with the user's input or environment; ``str(err)`` is the one-line explanation."""
