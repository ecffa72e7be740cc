"""Progress of long work: a bar with rate and ETA on a terminal, plain lines elsewhere.

One small API for every long-running command (train, bench, experiment --all,
and the recalibration/inference tools)::

    from tf1_repro import progress

    make_bar = progress.factory(quiet=args.quiet)          # in the CLI's run function
    with make_bar("train", total=1000, unit="step", initial=start) as bar:
        for step in range(start, 1000):
            ...
            bar.update(1, loss=loss)                       # keyword values shown beside the bar
            bar.write("checkpoint saved")                  # a log line that keeps the bar intact
    progress.echo("a log line")   # the same from code that holds no bar (a ``log`` function)

Library functions take ``progress=None`` (a factory like ``make_bar``) and call
``progress.resolve(progress)("desc", total)``, which gives a bar that does
nothing when the caller passed ``None``.

Where it goes (``stream``, default ``sys.stderr``, so stdout keeps the results):

* ``quiet=True``: nothing.
* ``stream.isatty()``: a ``tqdm`` bar: count, percent, rate and ETA, redrawn in place.
* otherwise (CI, pipes, files): plain lines such as
  ``train: 300/1000 step (30%)  412.3 step/s  ETA 0:00:02  loss=0.0412``, one each time
  the work passes another ``every_percent`` percent (default 10) and a last one at the end;
  with an unknown total, one every ``interval`` seconds (default 10).

Rate = items done in this run / seconds since the bar opened;
ETA = (total - done) / rate.
"""

import sys
import time

MODES = ("bar", "lines", "off")


def _format_seconds(seconds):
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _format_info(info):
    parts = []
    for key, value in info.items():
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return "  ".join(parts)


class Progress:
    """A progress display for ``total`` units of work (see the module docstring).

    Args:
      desc: what is being done ("train", "bench: timing").
      total: number of units, or None when unknown.
      unit: the unit's name ("step", "round", "experiment").
      initial: units already done before this run (a resumed training run).
      quiet: show nothing.
      stream: where to write (default sys.stderr).
      mode: force "bar", "lines" or "off" instead of choosing by ``stream.isatty()``.
      every_percent: in "lines" mode, a line each time this many percent more are done.
      interval: in "lines" mode with an unknown total, seconds between lines.
      clock: a function returning seconds (time.perf_counter; tests pass their own).
    """

    def __init__(self, desc, total=None, unit="it", initial=0, quiet=False, stream=None,
                 mode=None, every_percent=10, interval=10.0, clock=time.perf_counter):
        if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 0):
            raise ValueError(f"Progress: total must be None or an integer >= 0, got {total!r}")
        if mode not in (None,) + MODES:
            raise ValueError(f"Progress: mode must be one of {', '.join(MODES)} or None, got {mode!r}")
        if not 0 < every_percent <= 100:
            raise ValueError(f"Progress: every_percent must be in (0, 100], got {every_percent!r}")
        self.stream = stream if stream is not None else sys.stderr
        if quiet:
            mode = "off"
        elif mode is None:
            isatty = getattr(self.stream, "isatty", None)
            mode = "bar" if isatty is not None and isatty() else "lines"
        self.mode = mode
        self.desc, self.total, self.unit = desc, total, unit
        self.initial = self.done = initial
        self.info = {}
        self.every_percent, self.interval, self.clock = every_percent, interval, clock
        self.started = self.last_line = clock()
        self._next_percent = self._milestone_after(initial)
        self._closed = False
        self._bar = None
        if mode == "bar":
            from tqdm import tqdm  # pylint: disable=import-outside-toplevel
            self._bar = tqdm(total=total, desc=desc, unit=unit, initial=initial, file=self.stream,
                             dynamic_ncols=True, leave=True)

    def _milestone_after(self, done):
        if not self.total:
            return None
        percent = 100.0 * done / self.total
        return (int(percent // self.every_percent) + 1) * self.every_percent

    @property
    def rate(self):
        """Units per second in this run (0 before the first update)."""
        elapsed = self.clock() - self.started
        return (self.done - self.initial) / elapsed if elapsed > 0 else 0.0

    @property
    def eta(self):
        """Seconds left at the current rate; None when unknown."""
        rate = self.rate
        if self.total is None or rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / rate)

    def line(self):
        """The plain progress line as it would be printed now."""
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        percent = f" ({100.0 * self.done / self.total:.0f}%)" if self.total else ""
        eta = self.eta
        text = f"{self.desc}: {count} {self.unit}{percent}  {self.rate:,.1f} {self.unit}/s"
        if eta is not None and self.done < self.total:
            text += f"  ETA {_format_seconds(eta)}"
        elif self.total is not None and self.done >= self.total:
            text += f"  done in {_format_seconds(self.clock() - self.started)}"
        if self.info:
            text += "  " + _format_info(self.info)
        return text

    def update(self, n=1, **info):
        """``n`` more units done; keyword values (loss=...) are shown with the progress."""
        self.done += n
        self.info.update(info)
        if self.mode == "bar":
            if info:
                self._bar.set_postfix(info, refresh=False)
            self._bar.update(n)
        elif self.mode == "lines":
            now = self.clock()
            if self.total:
                if 100.0 * self.done / self.total >= self._next_percent or self.done >= self.total:
                    self._emit(now)
                    self._next_percent = self._milestone_after(self.done)
            elif now - self.last_line >= self.interval:
                self._emit(now)

    def _emit(self, now):
        print(self.line(), file=self.stream, flush=True)
        self.last_line = now

    def write(self, text, file=None):
        """Print a log line (to ``file``, default stdout) without breaking a bar."""
        file = file if file is not None else sys.stdout
        if self.mode == "bar":
            self._bar.write(text, file=file)
        else:
            print(text, file=file, flush=True)

    def close(self):
        """End the display; in "lines" mode print the last line if the end was not reached."""
        if self._closed:
            return
        self._closed = True
        if self.mode == "bar":
            self._bar.close()
        elif self.mode == "lines" and self.done != self.initial and (
                self.total is None or self.done < self.total):
            self._emit(self.clock())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def echo(text, file=None):
    """Print a line (default to stdout) that leaves any open bar intact (use it for logs)."""
    file = file if file is not None else sys.stdout
    tqdm_module = sys.modules.get("tqdm")
    if tqdm_module is not None and getattr(tqdm_module.tqdm, "_instances", None):
        tqdm_module.tqdm.write(text, file=file)
        file.flush()
    else:
        print(text, file=file, flush=True)


def factory(quiet=False, stream=None, mode=None, **options):
    """A function ``make(desc, total=None, unit="it", initial=0) -> Progress`` with these settings."""
    def make(desc, total=None, unit="it", initial=0):
        return Progress(desc, total, unit, initial, quiet=quiet, stream=stream, mode=mode, **options)
    return make


def null(desc, total=None, unit="it", initial=0):
    """A factory whose bars show nothing (what library functions use when given none)."""
    return Progress(desc, total, unit, initial, mode="off")


def resolve(progress):
    """``progress`` itself, or ``null`` when it is None."""
    return null if progress is None else progress


def add_quiet_flag(parser):
    """Add ``--quiet`` (no progress display) to an argparse parser."""
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar or progress lines (results are still printed)")
    return parser
