"""The `python [options] script|-m module [args]` command that `gradprobe run` wraps, taken apart.

Interpreter options (-u, -O, -W..., -X ...) go to the interpreter that runs gradprobe and the
script; everything after the script or module name goes to the script, untouched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# Options of the CPython interpreter that take no argument, and those that take one (-W x, -Wx).
_FLAGS = frozenset("bBdEiIOqRsuvx")
_WITH_ARGUMENT = frozenset("WX")
# Options that would stop gradprobe from running: -S drops site-packages, where gradprobe lives.
_REFUSED = {"S": "-S skips the site module, and gradprobe is imported from site-packages",
            "c": "-c runs a string: write it to a file, or use -m module",
            "i": "-i would leave an interactive prompt after the script"}


class CommandError(ValueError):
    """The command cannot be run under gradprobe; the message says why and what to do."""


@dataclass(frozen=True)
class PythonCommand:
    interpreter_options: tuple[str, ...]
    module: str | None  # -m module, or None for a script
    script: str | None
    arguments: tuple[str, ...]

    @property
    def program(self) -> list[str]:
        """What follows the interpreter options: `-m module args` or `script args`."""
        head = ["-m", self.module] if self.module is not None else [str(self.script)]
        return head + list(self.arguments)

    @property
    def name(self) -> str:
        """A short name for the run directory: the module's or the script's."""
        if self.module is not None:
            return self.module.rsplit(".", 1)[-1]
        return os.path.splitext(os.path.basename(str(self.script)))[0]


def parse_python_command(argv: list[str]) -> PythonCommand:
    """Parses `[python] [options] (script | -m module) [args]`; CommandError when it cannot be run."""
    words = list(argv)
    if words[:1] == ["--"]:
        words = words[1:]
    if words and os.path.basename(words[0]).startswith("python"):
        words = words[1:]  # run under this interpreter, where gradprobe is installed
    if not words:
        raise CommandError("give the command to run, e.g. gradprobe run -- python train.py --epochs 3")
    options: list[str] = []
    i = 0
    while i < len(words) and words[i].startswith("-") and words[i] not in ("-", "-m"):
        word = words[i]
        if word == "--":
            i += 1
            break
        letters = word[1:]
        for position, letter in enumerate(letters):
            if letter in _REFUSED:
                raise CommandError(f"python {word}: {_REFUSED[letter]}")
            if letter in _WITH_ARGUMENT:
                if position + 1 < len(letters):  # -Wignore
                    options.append(word)
                elif i + 1 < len(words):  # -W ignore
                    options += [word, words[i + 1]]
                    i += 1
                else:
                    raise CommandError(f"python {word} needs an argument")
                break
            if letter not in _FLAGS:
                raise CommandError(f"python option {word!r} is not supported by gradprobe run")
        else:
            options.append(word)
        i += 1
    rest = words[i:]
    if not rest:
        raise CommandError("no script or -m module after the interpreter options")
    if rest[0] == "-m":
        if len(rest) < 2:
            raise CommandError("-m needs a module name")
        return PythonCommand(tuple(options), rest[1], None, tuple(rest[2:]))
    if rest[0] == "-":
        raise CommandError("a script from standard input cannot be run: give a file")
    if not os.path.isfile(rest[0]):
        raise CommandError(f"no such script: {rest[0]}")
    return PythonCommand(tuple(options), None, rest[0], tuple(rest[1:]))
