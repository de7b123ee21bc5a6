"""Small helpers for the lock files (scripts/lock.sh, setup.sh, setup_oldest.sh, test.sh); stdlib only.

    lockfile.py report REPORT.json          the `name==version` lines of a `pip install --report`
    lockfile.py pins PYPROJECT              the lower bounds of the framework extras as `name==version`
    lockfile.py compare LOCK < FREEZE       how `pip freeze --all` differs from LOCK; exit 1 if it does
    lockfile.py extras LOCK < FREEZE        installed names LOCK does not list (what setup.sh removes)
    lockfile.py verify OVERLAY              the running interpreter sees OVERLAY's versions; exit 1 if not
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

# The frameworks whose supported ranges pyproject.toml declares (scripts/lock.sh pins their lower bounds),
# with the module gradprobe.integrations imports from each.
FRAMEWORKS = {"transformers": "transformers", "accelerate": "accelerate", "lightning": "lightning.pytorch"}
# What venv itself installs: never removed, compared only when the lock lists it.
TOOLING = {"pip", "setuptools", "wheel"}
# Never in the lock: built from this checkout.
SELF = "gradprobe"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(lines: list[str]) -> dict[str, tuple[str, str]]:
    """canonical name -> (name as written, version) of `name==version` lines; comments and blanks skipped.
    Lines such as `gradprobe @ file:///...` (pip freeze of a local build) are skipped too."""
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if "==" not in line:
            continue
        name, version = (part.strip() for part in line.split("==", 1))
        pins[canonical(name)] = (name, version)
    return pins


def report(path: str) -> None:
    entries = json.loads(Path(path).read_text())["install"]
    pins = {(e["metadata"]["name"], e["metadata"]["version"]) for e in entries}
    for name, version in sorted(pins, key=lambda pin: pin[0].lower()):  # the order of pip freeze
        print(f"{name}=={version}")


def pins(pyproject: str) -> None:
    """One lower bound per framework across every extra that names it (hf and its aliases agree)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: pytest and mypy bring tomli
        import tomli as tomllib
    extras = tomllib.loads(Path(pyproject).read_text())["project"]["optional-dependencies"]
    bounds: dict[str, set[str]] = {name: set() for name in FRAMEWORKS}
    for requirements in extras.values():
        for requirement in requirements:
            match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([^,;\s]+).*", requirement)
            if match and canonical(match[1]) in bounds:
                bounds[canonical(match[1])].add(match[2])
    for name, found in bounds.items():
        if len(found) != 1:
            sys.exit(f"lockfile: pyproject.toml's extras give {name} {len(found)} lower bounds {sorted(found)}, "
                     "not one: make them agree")
        print(f"{name}=={found.pop()}")


def differences(lock: str) -> tuple[list[str], list[str]]:
    """(lines of what differs or is missing, names installed but not locked), from a freeze on stdin."""
    locked = read_pins(Path(lock).read_text().splitlines())
    installed = read_pins(sys.stdin.read().splitlines())
    installed.pop(SELF, None)
    differ = [f"{name}: locked {version}, installed {installed.get(key, ('', 'nothing'))[1]}"
              for key, (name, version) in sorted(locked.items()) if installed.get(key, ("", None))[1] != version]
    extra = [name for key, (name, _) in sorted(installed.items()) if key not in locked and key not in TOOLING]
    return differ, extra


def compare(lock: str) -> None:
    differ, extra = differences(lock)
    for line in differ:
        print(f"  {line}")
    for name in extra:
        print(f"  {name}: installed, not locked")
    sys.exit(1 if differ or extra else 0)


def extras(lock: str) -> None:
    for name in differences(lock)[1]:
        print(name)


def verify(overlay: str) -> None:
    """Each overlay pin is what importlib.metadata finds first, and each framework imports (the tests
    would skip one that does not, and pass). Prints each framework's version and where it was
    imported from, and torch's, numpy's and gradprobe's (the main .venv)."""
    import importlib
    import importlib.metadata as metadata

    wrong = []
    for _, (name, version) in sorted(read_pins(Path(overlay).read_text().splitlines()).items()):
        found = metadata.version(name)
        if found != version:
            wrong.append(f"{name}: wants {version}, the interpreter finds {found}")
    for name, module in {**FRAMEWORKS, "torch": "torch", "numpy": "numpy", SELF: SELF}.items():
        try:
            where = str(Path(importlib.import_module(module).__file__ or "?").parent)
        except Exception as error:  # any import failure is the finding
            where = f"DOES NOT IMPORT: {error!r}"
            wrong.append(f"{module}: {error!r}")
        print(f"  {name:13} {metadata.version(name):14} {where}")
    if wrong:
        sys.exit("lockfile: the oldest set is not what runs:\n  " + "\n  ".join(wrong))


if __name__ == "__main__":
    commands = {"report": report, "pins": pins, "compare": compare, "extras": extras, "verify": verify}
    if len(sys.argv) != 3 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    commands[sys.argv[1]](sys.argv[2])
