"""Where tools write: the ``--out`` directory checks, done before any work.

A tool never writes next to the user's files: ``--out`` must be a directory (new or existing),
not the source's own directory, writable, and without the files the tool would write (unless
``force``)."""

import dataclasses
import os

from tf1_repro.graph.errors import InputError


@dataclasses.dataclass(frozen=True)
class OutWording:
    """The messages ``check_out_dir`` gives, as ``str.format`` templates with the fields ``what``
    (the flag), ``out`` (the directory), ``parent`` (the directory that is not writable) and
    ``name`` (the file already there). Each message is prefixed with ``"{where}: "``. The
    defaults are the shared wording; a tool whose messages predate it passes its own, so they
    stay word for word."""

    is_file: str = "{what} must be a directory, got {out!r} (a file)"
    is_source: str = ("{what} must not be the source's directory, got {out!r} (the source is "
                      "never modified)")
    not_writable: str = "{what} must be writable, got {out!r} ({parent} is not writable)"
    holds: str = "{what} {out!r} already holds {name}; pass --force to replace it"


WORDING = OutWording()


def writable_parent(path):
    """The nearest existing directory at or above ``path``."""
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    return parent


def check_out_dir(out, where, *, taken=(), force=False, source_dir=None, what="--out",
                  wording=WORDING, writable=True, holds_before_writable=False):
    """Refuse ``out`` (``InputError``, one line) when it is a file, is ``source_dir``, cannot be
    written (when ``writable``), or holds any of ``taken`` and not ``force``.

    ``taken`` is the names the tool would write, or a callable ``taken(out) -> [names there]``
    (the first is named). The checks run in that order, except that ``holds_before_writable``
    checks ``taken`` before writability."""
    if not isinstance(out, (str, os.PathLike)) or not os.fspath(out):
        raise InputError(f"{where}: {what} must name a directory, got {out!r}")
    out = os.fspath(out)

    def refuse(template, **fields):
        raise InputError(f"{where}: " + template.format(what=what, out=out, **fields))

    if os.path.exists(out) and not os.path.isdir(out):
        refuse(wording.is_file)
    if source_dir is not None and os.path.realpath(out) == os.path.realpath(source_dir):
        refuse(wording.is_source)
    if holds_before_writable:
        _check_taken(out, taken, force, wording, refuse)
    if writable:
        parent = writable_parent(out)
        if not os.access(parent, os.W_OK):
            refuse(wording.not_writable, parent=parent)
    if not holds_before_writable:
        _check_taken(out, taken, force, wording, refuse)


def _check_taken(out, taken, force, wording, refuse):
    if callable(taken):
        present = list(taken(out)) if os.path.isdir(out) else []
    else:
        present = [name for name in taken if os.path.exists(os.path.join(out, name))]
    if present and not force:
        refuse(wording.holds, name=present[0])
