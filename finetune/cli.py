"""The `finetune` command: one subcommand per module, each a ``main(argv)`` that tests call in-process.

finetune train --config configs/textcnn.yaml [--key value ...]
finetune --help
"""

from __future__ import annotations

import importlib
import os
import select
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from finetune.errors import UserError

# subcommand -> (module with main(argv), one-line description)
SUBCOMMANDS = {
    "train": ("finetune.train", "train a classifier and keep the best checkpoint by eval loss"),
    "pretrain": ("finetune.pretrain", "continue masked-language-model pretraining of an encoder on your texts"),
    "predict": ("finetune.predict", "classify the texts of a file or stdin with a trained model"),
    "evaluate": ("finetune.evaluation", "metrics, per-class report and confusion matrix on a labelled file"),
    "export": ("finetune.export", "export a trained model to ONNX (optionally int8) and check it against PyTorch"),
    "serve": ("finetune.serve", "answer HTTP prediction requests, with a page to try the model"),
    "cache": ("finetune.cache.cli", "list, inspect and clean the tokenized-data cache"),
    "report": ("finetune.report", "plot a run's loss and metric curves and summarise it"),
    "check": ("finetune.check", "find duplicates, leaks, conflicting labels, long texts and likely label errors"),
    "search": (
        "finetune.search",
        "search hyperparameters with Optuna; the winner chosen over seeds, its config saved",
    ),
}


# The status a shell reports for a command killed by SIGPIPE (128 + 13), as `seq 100000 | head -1` leaves seq:
# a script with `set -o pipefail` sees that the reader stopped early, not that the command failed (1).
CLOSED_PIPE_STATUS = 141
# And the status for a command stopped by Ctrl-C (128 + SIGINT), after one line instead of a traceback.
INTERRUPTED_STATUS = 130


def run_command(main: Callable[[list[str]], int], argv: list[str]) -> int:
    """Runs a subcommand's main: a UserError is printed without a traceback and exits 2; output into a pipe whose
    reader has gone (`finetune cache list | head -3`) ends the command quietly, as it ends a Unix tool. Ctrl-C ends it
    with one line, and the module's ``INTERRUPTED_HINT`` (how to go on) when it has one."""
    try:
        try:
            with remembered_interrupts():
                return main(argv)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return interrupted(getattr(sys.modules.get(main.__module__), "INTERRUPTED_HINT", ""))
        finally:
            sys.stdout.flush()  # output still buffered fails here, where it is caught, not at interpreter exit
    except BrokenPipeError:
        closed = [stream for stream in (sys.stdout, sys.stderr) if reader_gone(stream)]
        if not closed:
            raise  # a pipe of the command's own (a worker process, a socket) broke: a real error
        # Python flushes stdout and stderr once more at exit; into a closed pipe that prints another error.
        devnull = os.open(os.devnull, os.O_WRONLY)
        for stream in closed:
            os.dup2(devnull, stream.fileno())
        return CLOSED_PIPE_STATUS


PRESSED: list[int] = []  # the Ctrl-Cs of this command, raised or dropped


@contextmanager
def remembered_interrupts() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt, as Python's own handler does, and is remembered: Python drops one raised in a
    garbage-collection callback, as happens while a model is built, and ``check_interrupt`` raises it again at the
    next training step or batch of predictions (without the "Exception ignored in ..." traceback Python prints for
    the dropped one). Where SIGINT is ignored (a background job) or another handler has it, or off the main thread,
    nothing changes."""
    mine = threading.current_thread() is threading.main_thread()
    mine = mine and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    unraisable = sys.unraisablehook

    def remember(signum, frame):
        PRESSED.append(signum)
        raise KeyboardInterrupt

    def dropped(info) -> None:
        if not (PRESSED and issubclass(info.exc_type, KeyboardInterrupt)):
            unraisable(info)

    if mine:
        signal.signal(signal.SIGINT, remember)
        sys.unraisablehook = dropped
    try:
        yield
    finally:
        if mine:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            sys.unraisablehook = unraisable
        PRESSED.clear()  # the command is over: a Ctrl-C it remembered must not stop the next one


def check_interrupt() -> None:
    """Raises KeyboardInterrupt again, in the main thread, if Ctrl-C was pressed (its first raise may have been
    dropped)."""
    if PRESSED and threading.current_thread() is threading.main_thread():
        raise KeyboardInterrupt


def interrupted(hint: str = "") -> int:
    print(f"\nstopped (Ctrl-C){hint}", file=sys.stderr)
    return INTERRUPTED_STATUS


@contextmanager
def progress_bars(show: bool) -> Iterator[None]:
    """Inside, the progress bars of datasets (reading, tokenizing) and transformers (loading and writing weights)
    are off unless ``show``; after, each is as it was."""
    import datasets
    import transformers

    libraries = (datasets.utils.logging, transformers.utils.logging)
    were_on = [library.is_progress_bar_enabled() for library in libraries]
    if not show:
        for library in libraries:
            library.disable_progress_bar()
    try:
        yield
    finally:
        for library, was_on in zip(libraries, were_on, strict=True):
            if was_on:
                library.enable_progress_bar()


def reader_gone(stream) -> bool:
    """Whether ``stream`` writes into a pipe whose reading end is closed (poll reports an error for it)."""
    try:
        poller = select.poll()
        poller.register(stream.fileno(), select.POLLOUT)
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or a stream without a file descriptor
        return False
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


def usage() -> str:
    lines = ["usage: finetune <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {description}" for name, (_, description) in SUBCOMMANDS.items()]
    lines += ["", "`finetune <command> --help` lists a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Runs the subcommand that ``argv`` names with the rest of it."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        print(f"error: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(SUBCOMMANDS[command][0])  # seconds for the commands that load torch
    except KeyboardInterrupt:
        return interrupted()
    return run_command(module.main, rest)


if __name__ == "__main__":
    sys.exit(main())
