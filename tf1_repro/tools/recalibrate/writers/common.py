"""What the TF2 writers share: the ``--out`` checks and moving a staged result into ``out``."""

import os
import shutil
import tempfile

from tf1_repro.graph import paths
from tf1_repro.graph.errors import InputError
from tf1_repro.tools.recalibrate.common import WHERE, RecalibrateError


def source_folder(source):
    """The folder holding the artefact (a SavedModel's own directory; a file's folder)."""
    return os.path.abspath(source if os.path.isdir(source) else os.path.dirname(os.path.abspath(source)))


def check_out(source, out, force, names):
    """Refuse ``out`` when it is a file, the source's folder, inside a SavedModel source, not
    writable, or holds one of ``names`` (unless ``force``)."""
    try:
        paths.check_out_dir(out, WHERE, force=force, source_dir=source_folder(source), taken=names)
    except InputError as err:
        raise RecalibrateError(str(err)) from None
    if os.path.isdir(source):
        if os.path.realpath(out).startswith(os.path.realpath(source) + os.sep):
            raise RecalibrateError(f"{WHERE}: --out must not be inside the source SavedModel, got {out!r} "
                                   f"(the source is never modified)")


def staging(out):
    """A new temporary folder beside ``out`` (the same file system, so the move is a rename)."""
    parent = os.path.dirname(os.path.abspath(out))
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=".recalibrate-", dir=parent)


def move_in(staged, out, force):
    """Move every entry of ``staged`` into ``out`` (created), replacing same-named ones if ``force``."""
    os.makedirs(out, exist_ok=True)
    for name in sorted(os.listdir(staged)):
        target = os.path.join(out, name)
        if os.path.lexists(target):
            if not force:
                raise RecalibrateError(f"{WHERE}: --out {out!r} already holds {name}; pass --force to "
                                       f"replace it")
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            else:
                os.remove(target)
        os.replace(os.path.join(staged, name), target)


def same_bytes(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()
