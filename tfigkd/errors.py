"""The error type for problems the user can fix.

The CLI prints a ``UserError`` as one line (its message names the problem and
the fix) and exits with status 2; any other exception is a bug and keeps its
traceback. ``UserError`` subclasses ``ValueError`` so library callers that
catch ``ValueError`` keep working.
"""


class UserError(ValueError):
    """Bad input, data, config or files; the message says what to do."""
