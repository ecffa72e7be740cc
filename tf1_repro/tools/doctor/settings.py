"""``diagnose``'s arguments, checked: ``--feed``, ``--input-shape``, ``--data`` and ``--no-run``."""

import dataclasses
import os
from typing import Optional, Tuple

import numpy as np

from tf1_repro.graph import feeds as graph_feeds
from tf1_repro.graph.errors import InputError
from tf1_repro.tools.doctor.base import WHERE, DoctorError


@dataclasses.dataclass
class Settings:
    """The checked arguments of ``diagnose`` (validated in ``settings``)."""

    path: str
    feeds: dict
    input_shapes: dict
    data: dict
    run: bool
    signature: Optional[str] = None
    outputs: Tuple[str, ...] = ()  # --outputs: tensor names that replace the chosen outputs


def settings(path, feeds=None, input_shapes=None, data=None, run=True, signature=None,
             outputs=None):
    """Check ``diagnose``'s arguments; ``DoctorError`` names the bad one.

    feeds: ``{name: value}`` (node or tensor name; bool, number or text
    "true"/"false"/number); input_shapes: ``{name: tuple of positive ints}``;
    data: an ``.npz`` path or ``{name: array}``; signature: a SavedModel signature name;
    outputs: tensor or op names (an op name means its output 0) to run instead of the outputs
    the doctor chooses (checked against the graph when it is read: ``runs.check_outputs``).
    """
    if signature is not None and (not isinstance(signature, str) or not signature):
        raise DoctorError(f"{WHERE}: --signature must be a signature name, got {signature!r}")
    if isinstance(outputs, str):
        outputs = [n.strip() for n in outputs.split(",")]
    outputs = tuple(outputs or ())
    if any(not isinstance(n, str) or not n for n in outputs):
        raise DoctorError(f"{WHERE}: --outputs must be tensor names (NAME[,NAME...]), got "
                          f"{list(outputs)!r}")
    if not isinstance(path, (str, os.PathLike)):
        raise DoctorError(f"{WHERE}: PATH must be a path, got {type(path).__name__}")
    checked = {}
    for name, value in dict(feeds or {}).items():
        if not isinstance(name, str) or not name:
            raise DoctorError(f"{WHERE}: --feed names must be tensor names, got {name!r}")
        if not isinstance(value, (bool, int, float, str, list, tuple, np.ndarray, np.generic)):
            raise DoctorError(f"{WHERE}: --feed {name} must be a bool or a number, got "
                              f"{type(value).__name__}")
        if isinstance(value, str):  # the command line's syntax: true/false, a number, a JSON list
            try:
                value = graph_feeds.parse_feed(f"{name}={value}")[1]
            except ValueError as err:
                raise DoctorError(f"{WHERE}: {err}") from None
        checked[name] = value
    shapes = {}
    for name, shape in dict(input_shapes or {}).items():
        try:
            shape = tuple(int(d) for d in shape)
        except (TypeError, ValueError):
            raise DoctorError(f"{WHERE}: --input-shape {name} must be positive integers, got "
                              f"{shape!r}") from None
        if not shape or min(shape) < 1:
            raise DoctorError(f"{WHERE}: --input-shape {name} must be positive integers, got "
                              f"{shape!r}")
        shapes[name] = shape
    if isinstance(data, (str, os.PathLike)):
        data = load_data(str(data))
    elif data is not None and not isinstance(data, dict):
        raise DoctorError(f"{WHERE}: --data must be an .npz file or a dict, got "
                          f"{type(data).__name__}")
    return Settings(os.fspath(path), checked, shapes, dict(data or {}), bool(run), signature,
                    tuple(n if ":" in n else n + ":0" for n in outputs))


def load_data(path):
    """``{name: array}`` from an ``.npz`` file (``graph.feeds.load_npz``); DoctorError naming the
    file and what is wrong (not readable, or no array in it)."""
    try:
        return graph_feeds.load_npz(path, WHERE)
    except InputError as err:
        raise DoctorError(str(err)) from None


def parse_feed(text):
    """``NAME=VALUE`` -> (NAME, value) by ``graph.feeds.parse_feed`` (true/false, a number or a
    JSON list); ValueError when malformed, its message without the leading ``--feed`` (the command
    line adds it). The value is typed by the placeholder's dtype later, with or without a run."""
    try:
        return graph_feeds.parse_feed(text)
    except ValueError as err:
        raise ValueError(str(err).removeprefix("--feed").lstrip()) from None


def parse_input_shape(text):
    """``NAME=N,...`` -> (NAME, (N, ...)); ValueError when malformed (for argparse)."""
    name, sep, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        shape = ()
    if not sep or not name or not shape or min(shape) < 1:
        raise ValueError(f"must be NAME=N,... with positive integers, got {text!r}")
    return name, shape
