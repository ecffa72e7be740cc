"""Resumable training for real, in subprocesses: kill -9, kill during a checkpoint write,
corrupt checkpoints, a full or unwritable disk, Ctrl-C, determinism."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf
import support

ROOT = support.ROOT
STEPS = 240


def _cmd(out, *extra, steps=STEPS, every=40):
    return [sys.executable, "-m", "tf1_repro", "train", "--steps", str(steps), "--out", str(out),
            "--checkpoint-every", str(every), *extra]


def _run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=600, **kw)


def _variables(prefix):
    reader = tf.train.load_checkpoint(str(prefix))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}


def _assert_bitwise_equal(a, b):
    va, vb = _variables(a), _variables(b)
    assert va.keys() == vb.keys()
    differing = [k for k in va if not np.array_equal(va[k], vb[k])]
    assert not differing, differing


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    done = _run(_cmd(out))
    assert done.returncode == 0, done.stderr
    return out


def _kill_when(proc, predicate):
    """Read progress lines until predicate(line) holds, then SIGKILL; returns the lines read."""
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if predicate(line):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    return lines


def _progress_step(line):
    return int(line.split()[1].split("/")[0]) if line.startswith("step ") else -1


@pytest.mark.slow
def test_kill_9_then_the_same_command_ends_bitwise_equal(reference, tmp_path):
    kill_at = int(np.random.default_rng().integers(50, 200))
    proc = subprocess.Popen(_cmd(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    lines = _kill_when(proc, lambda line: _progress_step(line) >= kill_at)
    assert proc.returncode == -signal.SIGKILL, (kill_at, lines)
    done = _run(_cmd(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "resumed from" in done.stdout
    _assert_bitwise_equal(reference / f"model.ckpt-{STEPS}", tmp_path / f"model.ckpt-{STEPS}")


@pytest.mark.slow
def test_kill_during_checkpoint_writes_then_resume(reference, tmp_path):
    """A checkpoint every step: the kill lands while one is being written, most of the time."""
    kill_at = int(np.random.default_rng().integers(30, 150))
    proc = subprocess.Popen(_cmd(tmp_path, every=1), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    _kill_when(proc, lambda line: _progress_step(line) >= kill_at)
    predicted = _run([sys.executable, "-m", "tf1_repro", "predict", "--checkpoint", str(tmp_path)])
    assert predicted.returncode == 0, predicted.stderr  # the previous checkpoint still restores
    done = _run(_cmd(tmp_path, every=1))
    assert done.returncode == 0, done.stderr
    _assert_bitwise_equal(reference / f"model.ckpt-{STEPS}", tmp_path / f"model.ckpt-{STEPS}")


@pytest.mark.slow
def test_a_corrupt_checkpoint_falls_back_then_exits_2(tmp_path):
    assert _run(_cmd(tmp_path, steps=100, every=50)).returncode == 0
    newest = tmp_path / "model.ckpt-100.data-00000-of-00001"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    done = _run([sys.executable, "-m", "tf1_repro", "predict", "--checkpoint", str(tmp_path)])
    assert done.returncode == 0, done.stderr
    warning = [l for l in done.stderr.splitlines() if l.startswith("checkpoint ")]
    assert len(warning) == 1 and "model.ckpt-100 is unreadable" in warning[0]
    assert "model.ckpt-100.data-00000-of-00001" in warning[0]
    assert "model.ckpt-50)" in done.stdout
    (tmp_path / "model.ckpt-50.index").write_bytes(b"garbage")
    done = _run([sys.executable, "-m", "tf1_repro", "predict", "--checkpoint", str(tmp_path)])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        f"python -m tf1_repro checkpoint: no readable checkpoint in {tmp_path} (2 found, all unreadable)")
    assert "Traceback" not in done.stderr


def _mount_tmpfs(path, options):
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


@pytest.mark.slow
@pytest.mark.parametrize("options,reason", [("size=16k", "No space left on device"),
                                            ("ro", "Read-only file system")])
def test_a_full_or_read_only_disk_is_refused_before_training(tmp_path, options, reason):
    small = tmp_path / "disk"
    _mount_tmpfs(small, options)
    try:
        done = _run(_cmd(small, steps=20))
        assert done.returncode == 2
        assert "--out must be writable with room for a checkpoint" in done.stderr and reason in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
        assert os.listdir(small) == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_an_out_path_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    done = _run(_cmd(tmp_path / "file" / "sub", steps=5))
    assert done.returncode == 2 and "--out must be a directory we can create" in done.stderr


@pytest.mark.slow
def test_ctrl_c_saves_a_final_checkpoint_and_resumes(tmp_path):
    proc = subprocess.Popen(_cmd(tmp_path, steps=100_000, every=100_000), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    for line in proc.stdout:
        if line.startswith("step "):
            proc.send_signal(signal.SIGINT)
            break
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130
    stopped = [l for l in out.splitlines() if l.startswith("interrupted after step ")]
    assert stopped, out
    step = int(stopped[0].split()[3].rstrip(":"))
    assert (tmp_path / f"model.ckpt-{step}.index").exists()
    done = _run(_cmd(tmp_path, steps=step + 5, every=100_000))
    assert done.returncode == 0 and f"resumed from {tmp_path}/model.ckpt-{step} at step {step}" in done.stdout


@pytest.mark.slow
def test_same_seed_is_bitwise_reproducible_and_another_seed_differs(reference, tmp_path):
    assert _run(_cmd(tmp_path / "again")).returncode == 0
    _assert_bitwise_equal(reference / f"model.ckpt-{STEPS}", tmp_path / "again" / f"model.ckpt-{STEPS}")
    assert (reference / "train_log.jsonl").read_text() == (tmp_path / "again" / "train_log.jsonl").read_text()
    assert _run(_cmd(tmp_path / "other", "--seed", "1")).returncode == 0
    a = _variables(reference / f"model.ckpt-{STEPS}")
    b = _variables(tmp_path / "other" / f"model.ckpt-{STEPS}")
    assert not np.array_equal(a["fc1/kernel"], b["fc1/kernel"])


def test_resuming_with_other_settings_is_refused(reference):
    before = sorted(os.listdir(reference))
    done = _run(_cmd(reference, "--batch-size", "32", steps=STEPS + 10))
    assert done.returncode == 2
    assert ("--batch-size must match the run being resumed" in done.stderr
            and len(done.stderr.strip().splitlines()) == 1)
    assert sorted(os.listdir(reference)) == before


def test_predict_reports_accuracy(reference):
    done = _run([sys.executable, "-m", "tf1_repro", "predict", "--checkpoint", str(reference),
                 "--batch-size", "100"])
    assert done.returncode == 0, done.stderr
    accuracy = float(done.stdout.split()[1])
    assert accuracy > 0.9 and f"model.ckpt-{STEPS}" in done.stdout
