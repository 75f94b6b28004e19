"""The one exception type for mistakes a user can fix: a bad config, bad data, a missing file."""

import contextlib


class UserError(Exception):
    """A problem in the user's input. The command line prints the message, without a traceback, and exits 2."""


class OutOfDeviceMemory(UserError):
    """The device ran out of memory: the run's batch sizes or max_length are too large for it. finetune search marks
    such a trial failed and goes on with the next."""


@contextlib.contextmanager
def stop_when_out_of_memory(device: object, settings: str, advice: str):
    """Turns the device running out of memory (torch's error, with its allocator statistics and a traceback) into
    OutOfDeviceMemory: what torch tried to allocate, on which device, the ``settings`` that decide the memory, and
    the ``advice``."""
    try:
        yield
    except RuntimeError as error:  # torch.OutOfMemoryError is one; torch is not imported for the check until then
        import torch

        if not isinstance(error, torch.OutOfMemoryError):
            raise
        reason = ". ".join(str(error).split(". ")[:2]) or "out of memory"  # what it tried to allocate
        raise OutOfDeviceMemory(f"{reason} (on {device}; {settings}). {advice}") from error
