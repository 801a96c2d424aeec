"""The one exception type users see.

Anything raised as `SmraboothError` is a problem with the user's input (a path, a setting, a file),
and the CLI prints its message on one line and exits with status 2, without a traceback. Messages
name the file or setting at fault and say how to fix it.
"""


class SmraboothError(Exception):
    """A user-facing error: bad input, with a message that says what to do."""
