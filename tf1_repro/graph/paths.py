"""Where tools write: the ``--out`` directory checks, done before any work.

A tool never writes next to the user's files: ``--out`` must be a directory (new or existing),
not the source's own directory, writable, and without the files the tool would write (unless
``force``)."""

import os

from tf1_repro.graph.errors import InputError


def writable_parent(path):
    """The nearest existing directory at or above ``path``."""
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    return parent


def check_out_dir(out, where, *, taken=(), force=False, source_dir=None, what="--out"):
    """Refuse ``out`` (``InputError``, one line) when it is a file, is ``source_dir``, cannot be
    written, or holds any of ``taken`` (names the tool would write) and not ``force``."""
    if not isinstance(out, (str, os.PathLike)) or not os.fspath(out):
        raise InputError(f"{where}: {what} must name a directory, got {out!r}")
    out = os.fspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"{where}: {what} must be a directory, got {out!r} (a file)")
    if source_dir is not None and os.path.realpath(out) == os.path.realpath(source_dir):
        raise InputError(f"{where}: {what} must not be the source's directory, got {out!r} "
                         f"(the source is never modified)")
    parent = writable_parent(out)
    if not os.access(parent, os.W_OK):
        raise InputError(f"{where}: {what} must be writable, got {out!r} ({parent} is not writable)")
    present = [name for name in taken if os.path.exists(os.path.join(out, name))]
    if present and not force:
        raise InputError(f"{where}: {what} {out!r} already holds {present[0]}; pass --force to "
                         f"replace it")
