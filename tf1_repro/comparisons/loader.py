"""Load a user's builder from ``PATH.py:FUNC`` and call it, with one-line errors."""

import importlib.util
import os
import sys

from tf1_repro.graph.errors import InputError, flat_line


class BuilderError(InputError):
    """The builder could not be imported or built: one line for the command line (exit 2)."""


def load(spec, where):
    """The function named by ``PATH.py:FUNC``."""
    path, sep, name = spec.rpartition(":")
    if not sep or not path or not name:
        raise BuilderError(f"{where}: builder must be PATH.py:FUNC, got {spec!r}")
    if not os.path.isfile(path):
        raise BuilderError(f"{where}: no file {path!r} (builder {spec!r})")
    module_name = "tf1_repro_user_" + os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    directory = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, directory)  # let the file import its neighbours
    try:
        module_spec.loader.exec_module(module)
    except Exception as err:  # pylint: disable=broad-except
        raise BuilderError(f"{where}: importing {path} failed: {type(err).__name__}: "
                           f"{flat_line(err)}") from err
    finally:
        sys.path.remove(directory)
    func = getattr(module, name, None)
    if not callable(func):
        raise BuilderError(f"{where}: {path} has no function {name!r}")
    return func


def call(func, args, where, describe):
    """``func(*args)``; a raised exception becomes a one-line ``BuilderError``."""
    try:
        return func(*args)
    except Exception as err:  # pylint: disable=broad-except
        raise BuilderError(f"{where}: {describe} raised {type(err).__name__}: {flat_line(err)}") from err
