"""
Command-line conventions shared by the ir_d2 tools (no detectron2 import).

- Bad input or options end a tool with one line naming the file, key or flag
  (:class:`CommandLineError`, a ``SystemExit``), never with a traceback from deep in a stack. Set
  env ``IR_D2_DEBUG=1`` to get the traceback instead. One path leads there: library functions
  raise ordinary exceptions (``ValueError``, ``ir_d2.data.IRDataError``,
  ``ir_d2.utils.fileio.OutputRefusedError``, ``OSError``), never ``SystemExit``, and a tool's
  ``main`` turns them into :class:`CommandLineError` with :func:`one_line_errors`.
- Config overrides are given the same way to every tool: trailing ``KEY VALUE`` pairs, or the same
  pairs after ``--opts`` (detectron2's train_net uses the first form, its demo the second).
"""

import argparse
import logging
import os
import re
from contextlib import contextmanager
from typing import List, Sequence, Tuple

__all__ = [
    "CommandLineError",
    "one_line_errors",
    "quiet_training_errors",
    "move_config_pairs_to_end",
    "add_opts_arguments",
    "collect_opts",
    "split_trailing_opts",
    "positive",
]

#: A config key as written on a command line: upper-case words joined by dots (MODEL.WEIGHTS).
CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$")


class CommandLineError(SystemExit):
    """Ends a tool with one line on stderr (the message) and exit status 1."""


@contextmanager
def one_line_errors(prog: str, types: Tuple[type, ...] = (ValueError, OSError, KeyError)):
    """
    Turn the ``types`` of errors raised inside the block into a :class:`CommandLineError`
    ``"<prog>: <message>"`` on one line (unless env ``IR_D2_DEBUG`` is set). Use it around what a
    user's input drives (config, files, options), not around a training loop.
    """
    try:
        yield
    except types as e:
        if os.environ.get("IR_D2_DEBUG"):
            raise
        text = str(e)
        if "Original Traceback" in text:  # raised in a DataLoader worker: its last line
            text = [line for line in text.splitlines() if line.strip()][-1]
        message = " ".join(text.split()) or type(e).__name__
        if isinstance(e, KeyError) and message.startswith("'"):
            message = f"unknown key {message}"
        raise CommandLineError(f"{prog}: {message}") from e


class _DropLoggedTraceback(logging.Filter):
    def __init__(self, types):
        super().__init__()
        self.types = types

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, self.types)


@contextmanager
def quiet_training_errors(types: Tuple[type, ...]):
    """
    Inside the block, detectron2's training loop does not log the traceback of the ``types`` of
    errors (``TrainerBase.train``: ``logger.exception("Exception during training:")``) before
    they propagate to :func:`one_line_errors`; with env ``IR_D2_DEBUG`` it does.
    """
    if os.environ.get("IR_D2_DEBUG"):
        yield
        return
    train_loop = logging.getLogger("detectron2.engine.train_loop")
    drop = _DropLoggedTraceback(types)
    train_loop.addFilter(drop)
    try:
        yield
    finally:
        train_loop.removeFilter(drop)


def move_config_pairs_to_end(argv: Sequence[str], parser: argparse.ArgumentParser) -> List[str]:
    """
    ``argv`` with the ``KEY VALUE`` config overrides that stand before other options moved to
    the end, where ``parser`` takes them as trailing overrides (``demo --config-file c.yaml
    MODEL.WEIGHTS w.pth --input a.png --output out/``). A key is a token that looks like one
    (:data:`CONFIG_KEY`), is not an existing path and is not the value of an option of
    ``parser``; nothing after ``--opts`` moves.
    """
    argv = list(argv)
    flags = {s for a in parser._actions if a.nargs == 0 for s in a.option_strings}
    head, moved, i = [], [], 0
    while i < len(argv):
        token = argv[i]
        if token == "--opts":
            head += argv[i:]
            break
        last = head[-1] if head else ""
        follows_option = last.startswith("-") and "=" not in last and last not in flags
        is_key = CONFIG_KEY.match(token) and not os.path.exists(token) and i + 1 < len(argv)
        if is_key and not follows_option:
            moved += argv[i : i + 2]
            i += 2
            continue
        head.append(token)
        i += 1
    return head + moved


def add_opts_arguments(parser: argparse.ArgumentParser, positional: bool = True) -> None:
    """``--opts KEY VALUE ...`` and, with ``positional``, trailing ``KEY VALUE ...`` pairs."""
    parser.add_argument(
        "--opts",
        dest="dash_opts",
        nargs=argparse.REMAINDER,
        default=[],
        metavar="KEY VALUE",
        help="config overrides (the same as trailing KEY VALUE pairs)",
    )
    if positional:
        parser.add_argument(
            "opts", nargs=argparse.REMAINDER, default=[], help="config overrides: KEY VALUE ..."
        )


def collect_opts(args: argparse.Namespace) -> List[str]:
    """The config overrides of both forms, trailing pairs first (ValueError for an odd number:
    the tool's :func:`one_line_errors` turns it into one line)."""
    opts = list(getattr(args, "opts", None) or [])
    if opts and opts[0] == "--opts":  # "--opts" after a trailing pair
        opts = opts[1:]
    if "--opts" in opts:
        i = opts.index("--opts")
        opts = opts[:i] + opts[i + 1 :]
    dash = list(getattr(args, "dash_opts", None) or [])
    if len(opts + dash) % 2:
        raise ValueError(
            f"config overrides must be KEY VALUE pairs, got an odd number: {opts + dash}"
        )
    return opts + dash


def split_trailing_opts(values: Sequence[str]) -> Tuple[List[str], List[str]]:
    """
    Split a ``nargs="+"`` list that may end with config overrides (``--input a.png b/
    MODEL.WEIGHTS w.pth``): the overrides start at the first value that looks like a config key
    (``MODEL.WEIGHTS``) and is not an existing path.
    """
    values = list(values)
    for i, v in enumerate(values):
        if CONFIG_KEY.match(v) and not os.path.exists(v):
            return values[:i], values[i:]
    return values, []


def positive(kind=int, flag: str = ""):
    """An argparse ``type`` accepting only values > 0 (the error names the flag)."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} must be a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{flag} must be > 0, got {text}")
        return value

    return parse


def tool_parser(module: str, description: str, raw_text: bool = False) -> argparse.ArgumentParser:
    """The argument parser of the tool ``python -m <module>``, its help opening with
    ``description`` (the module's docstring) kept as written: its line breaks too with
    ``raw_text``, else its paragraphs."""
    return argparse.ArgumentParser(
        prog=f"python -m {module}",
        description=description,
        formatter_class=(
            argparse.RawTextHelpFormatter if raw_text else argparse.RawDescriptionHelpFormatter
        ),
    )
