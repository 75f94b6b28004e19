"""The one exception type for mistakes a user can fix: a bad config, bad data, a missing file."""


class UserError(Exception):
    """A problem in the user's input. The command line prints the message, without a traceback, and exits 2."""


class OutOfDeviceMemory(UserError):
    """The device ran out of memory: the run's batch sizes or max_length are too large for it. finetune search marks
    such a trial failed and goes on with the next."""
