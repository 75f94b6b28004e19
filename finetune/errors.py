"""The one exception type for mistakes a user can fix: a bad config, bad data, a missing file."""


class UserError(Exception):
    """A problem in the user's input. The command line prints the message, without a traceback, and exits 2."""
