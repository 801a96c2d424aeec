"""The one exception type users see, and the one they should never see.

Anything raised as `SmraboothError` is a problem with the user's input (a path, a setting, a file),
and the CLI prints its message on one line and exits with status 2, without a traceback. Messages
name the file or setting at fault and say how to fix it.

`InternalError` is a broken invariant of smrabooth's own code: one function handing another what it never
should (tensor shapes that disagree, a window outside the clip it was computed from). No input of a user
reaches it through the checks, so it is a bug: the CLI reports it as an unexpected error (status 1, asking for a
report; --debug or SMRABOOTH_DEBUG=1 for the traceback), and tests can tell the two apart.
"""


class SmraboothError(Exception):
    """A user-facing error: bad input, with a message that says what to do."""


class InternalError(RuntimeError):
    """A broken internal invariant (a bug in smrabooth, never the user's input)."""
