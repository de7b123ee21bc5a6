"""The package version: one source, pyproject.toml's, compiled into the native core by CMake."""

from ._core import __version__

__all__ = ["__version__"]
