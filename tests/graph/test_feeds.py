"""graph.feeds.load_npz: the --data reader the command line uses for to-inference."""

import numpy as np
import pytest

from tf1_repro.graph.errors import InputError
from tf1_repro.graph.feeds import load_npz

TO_INFERENCE = "--data: cannot read {path!r} as .npz ({message})"


def test_arrays_by_name(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.arange(6.0).reshape(3, 2), y=np.array([1, 2, 3]))
    arrays = load_npz(str(tmp_path / "d.npz"), "tool")
    assert sorted(arrays) == ["x", "y"] and arrays["x"].shape == (3, 2)


def test_a_npy_file_is_refused_in_one_line_not_a_type_error(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((3, 4), np.float32))
    path = str(tmp_path / "a.npy")
    with pytest.raises(InputError, match=r"^tool: --data .*a\.npy: not a readable \.npz file "
                       r"\(ValueError: a single ndarray, not an archive of named arrays\)$"):
        load_npz(path, "tool")
    with pytest.raises(InputError) as caught:
        load_npz(path, "tool", unreadable=TO_INFERENCE)
    assert str(caught.value) == (f"--data: cannot read {path!r} as .npz (a single ndarray, not an "
                                 f"archive of named arrays)")


def test_unreadable_and_empty(tmp_path):
    missing = str(tmp_path / "none.npz")
    with pytest.raises(InputError) as caught:
        load_npz(missing, "tool", unreadable=TO_INFERENCE)
    assert str(caught.value) == (f"--data: cannot read {missing!r} as .npz ([Errno 2] No such file "
                                 f"or directory: {missing!r})")
    np.savez(tmp_path / "empty.npz")
    empty = str(tmp_path / "empty.npz")
    with pytest.raises(InputError, match="^tool: --data must hold at least one array"):
        load_npz(empty, "tool")
    assert load_npz(empty, "tool", allow_empty=True) == {}
