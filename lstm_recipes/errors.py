"""The one exception type for problems a user can fix (bad flags, files, data, run directories)."""


class UserError(Exception):
    """A problem with the user's input; the CLI prints its message and exits with status 2.

    Messages say what was expected and what was found, and where.
    """
