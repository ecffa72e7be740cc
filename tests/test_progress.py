"""The progress helper: plain lines off a terminal, a tqdm bar on one, nothing with --quiet."""

import io

import pytest

from tf1_repro import progress


class Clock:
    """A clock the test advances by hand (seconds)."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_lines_every_ten_percent_with_rate_and_eta():
    out, clock = io.StringIO(), Clock()
    with progress.Progress("train", 100, "step", stream=out, clock=clock) as bar:
        for _ in range(100):
            clock.now += 0.5  # 2 steps per second
            bar.update(1, loss=0.25)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10  # at 10%, 20%, ..., 100%
    # after 10 steps: 10 / 5 s = 2 step/s, 90 steps left / 2 = 45 s
    assert lines[0] == "train: 10/100 step (10%)  2.0 step/s  ETA 0:00:45  loss=0.25"
    assert lines[-1] == "train: 100/100 step (100%)  2.0 step/s  done in 0:00:50  loss=0.25"


def test_resumed_run_counts_rate_from_its_own_start():
    out, clock = io.StringIO(), Clock()
    bar = progress.Progress("train", 1000, "step", initial=600, stream=out, clock=clock)
    clock.now = 4.0
    bar.update(100)  # 100 steps in 4 s = 25 step/s; 300 left -> 12 s
    assert out.getvalue() == "train: 700/1000 step (70%)  25.0 step/s  ETA 0:00:12\n"
    bar.close()  # stopped before the end: one last line
    assert out.getvalue().splitlines()[-1] == "train: 700/1000 step (70%)  25.0 step/s  ETA 0:00:12"


def test_unknown_total_prints_every_interval_seconds():
    out, clock = io.StringIO(), Clock()
    bar = progress.Progress("scan", None, "file", stream=out, clock=clock, interval=10.0)
    for _ in range(25):
        clock.now += 1.0
        bar.update(1)
    assert out.getvalue().splitlines() == ["scan: 10 file  1.0 file/s", "scan: 20 file  1.0 file/s"]


def test_quiet_prints_nothing_and_write_still_logs(capsys):
    out = Terminal()
    with progress.factory(quiet=True, stream=out)("train", 10, "step") as bar:
        for _ in range(10):
            bar.update(1)
        bar.write("a log line")
    assert out.getvalue() == "" and bar.mode == "off"
    assert capsys.readouterr().out == "a log line\n"


def test_terminal_gets_a_tqdm_bar_with_rate_and_eta():
    out = Terminal()
    bar = progress.Progress("train", 50, "step", stream=out)
    assert bar.mode == "bar"
    for _ in range(50):
        bar.update(1, loss=0.5)
    bar.close()
    text = out.getvalue()
    assert "train: 100%" in text and "50/50" in text and "step/s" in text and "loss=0.5" in text


def test_null_factory_and_resolve():
    assert progress.resolve(None) is progress.null
    assert progress.null("x", 3).mode == "off"


@pytest.mark.parametrize("kwargs, message", [
    ({"total": -1}, "Progress: total must be None or an integer >= 0, got -1"),
    ({"total": 5, "mode": "fancy"}, "Progress: mode must be one of bar, lines, off or None, got 'fancy'"),
    ({"total": 5, "every_percent": 0}, "Progress: every_percent must be in (0, 100], got 0"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError) as err:
        progress.Progress("x", **kwargs)
    assert str(err.value) == message
