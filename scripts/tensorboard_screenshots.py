#!/usr/bin/env python3
"""Screenshots of TensorBoard's graph and scalar dashboards for the README, with headless Chromium.

    python scripts/tensorboard_screenshots.py [--logdir runs/tensorboard] [--out docs]

Needs Debian's ``chromium`` (``apt-get install -y chromium``). Runs the experiments into
``--logdir`` first if their event files are not there, starts a real TensorBoard server on a
free loopback port (``tf1_repro.experiments.tensorboard.serve``), drives Chromium through the
DevTools protocol over a pipe (no extra package): opens the graph dashboard on the
train-vs-inference run and expands ``bn_input`` and its ``tf.cond`` so the Switch/Merge ops
and the ``ema`` namespace inside the cond's true branch show, then the scalar dashboard with
train-vs-inference's accuracy curves on blobs and on handwritten digits (run now, beside
``--logdir``'s), and writes
``tensorboard-graph.png`` and ``tensorboard-scalars.png`` into ``--out``.
"""

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf1_repro import runtime  # noqa: E402  pylint: disable=wrong-import-position

GRAPH_RUN = "train-vs-inference"
WIDTH, HEIGHT = 1400, 860

DEEP_QUERY = """
function deep(selector, root) {
  root = root || document;
  const found = root.querySelector(selector);
  if (found) return found;
  for (const el of root.querySelectorAll('*')) {
    if (el.shadowRoot) { const inner = deep(selector, el.shadowRoot); if (inner) return inner; }
  }
  return null;
}
"""


class Chromium:
    """Headless Chromium driven through the DevTools protocol on fds 3 and 4 (--remote-debugging-pipe)."""

    def __init__(self, executable, width, height):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        high_r, high_w = os.dup(to_chrome_r), os.dup(from_chrome_w)

        def child_fds():
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.proc = subprocess.Popen(
            [executable, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--remote-debugging-pipe", f"--window-size={width},{height}", "about:blank"],
            preexec_fn=child_fds, close_fds=False, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        for fd in (to_chrome_r, from_chrome_w, high_r, high_w):
            os.close(fd)
        self._buffer, self._next_id = b"", 0
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Page.enable", session=True)
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                         "deviceScaleFactor": 1, "mobile": False},
                  session=True)

    def send(self, method, params=None, session=False):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_chrome, 1 << 16)
                if not chunk:
                    raise RuntimeError(f"chromium closed the pipe during {method}")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def evaluate(self, expression):
        result = self.send("Runtime.evaluate", {"expression": DEEP_QUERY + expression,
                                                "returnByValue": True, "awaitPromise": True},
                           session=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression, timeout=60.0, what=""):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                return
            time.sleep(0.5)
        raise TimeoutError(f"timed out waiting for {what or expression}")

    def goto(self, url):
        self.send("Page.navigate", {"url": url}, session=True)

    def screenshot(self, path):
        data = self.send("Page.captureScreenshot", {"format": "png"}, session=True)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        print(f"wrote {path}")

    def close(self):
        try:
            self.send("Browser.close")
        except RuntimeError:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def ensure_events(logdir):
    """Run every experiment into ``logdir`` unless its runs are there already."""
    from tf1_repro import experiments  # pylint: disable=import-outside-toplevel
    missing = [n for n in experiments.NAMES if not os.path.isdir(os.path.join(logdir, n))]
    for name in missing:
        print(f"running {name} into {logdir} ...")
        experiments.run_experiment(name, logdir=logdir)


def expand(browser, name):
    """Double-click the graph node ``name`` (a namespace) until its children are drawn."""
    selector = json.dumps(f'g[data-name="{name}"]')
    children = json.dumps(f'g[data-name^="{name}/"]')
    browser.wait_for(f"!!deep({selector})", what=f"graph node {name}")
    for _ in range(5):
        browser.evaluate(f"deep({selector}).querySelector('.nodeshape').dispatchEvent("
                         "new MouseEvent('dblclick', {bubbles: true})); true")
        try:
            browser.wait_for(f"!!deep({children})", timeout=5, what=f"the inside of {name}")
            break
        except TimeoutError:
            continue
    time.sleep(1.5)


def centre_of(browser, name):
    selector = json.dumps(f'g[data-name="{name}"]')
    return browser.evaluate(f"(() => {{ const r = deep({selector}).getBoundingClientRect(); "
                            "return [r.x + r.width / 2, r.y + r.height / 2]; })()")


def mouse(browser, kind, x, y, **extra):
    browser.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, **extra}, session=True)


def centre_and_zoom(browser, name, target, clicks):
    """Drag the graph so node ``name`` sits at ``target`` (x, y), then zoom in around it."""
    x, y = centre_of(browser, name)
    mouse(browser, "mousePressed", x, y, button="left", clickCount=1)
    for step in range(1, 11):
        mouse(browser, "mouseMoved", x + (target[0] - x) * step / 10, y + (target[1] - y) * step / 10,
              button="left")
    mouse(browser, "mouseReleased", target[0], target[1], button="left", clickCount=1)
    time.sleep(1)
    for _ in range(clicks):
        mouse(browser, "mouseWheel", target[0], target[1], deltaX=0, deltaY=-120)
        time.sleep(0.4)
    time.sleep(1.5)


def graph_screenshot(browser, logdir, path):
    from tf1_repro.experiments import tensorboard  # pylint: disable=import-outside-toplevel
    with tempfile.TemporaryDirectory() as single:  # the graph dashboard opens its first run
        os.symlink(os.path.abspath(os.path.join(logdir, GRAPH_RUN)), os.path.join(single, GRAPH_RUN))
        with tensorboard.serve(single, runs=[GRAPH_RUN]) as base:
            browser.goto(f"{base}/#graphs")
            for name in ("bn_input", "bn_input/cond"):
                expand(browser, name)
            centre_and_zoom(browser, "bn_input/cond", ((350 + WIDTH) / 2, 470), 1)
            # the node-info card would cover the cond's right-hand side, where the EMA sits
            browser.evaluate("const info = deep('tf-graph-info'); if (info) info.style.display = 'none'; true")
            time.sleep(1)
            browser.screenshot(path)


def scalar_screenshot(browser, logdir, path):
    """The accuracy curves of train-vs-inference on blobs (from ``logdir``) and on digits (run now)."""
    from tf1_repro import experiments  # pylint: disable=import-outside-toplevel
    from tf1_repro.experiments import tensorboard  # pylint: disable=import-outside-toplevel
    with tempfile.TemporaryDirectory() as both:
        os.makedirs(os.path.join(both, "blobs"))
        os.symlink(os.path.abspath(os.path.join(logdir, GRAPH_RUN)), os.path.join(both, "blobs", GRAPH_RUN))
        experiments.run_experiment(GRAPH_RUN, {"data": "digits"}, logdir=os.path.join(both, "digits"))
        runs = [f"blobs/{GRAPH_RUN}", f"digits/{GRAPH_RUN}"]
        with tensorboard.serve(both, runs=runs) as base:
            browser.goto(f"{base}/#scalars&tagFilter=%5Eaccuracy&_smoothingWeight=0")
            browser.wait_for("!!deep('tf-scalar-card') || !!deep('vz-line-chart2')",
                             what="a scalar chart")
            time.sleep(4)
            browser.screenshot(path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logdir", default="runs/tensorboard", help="event files (default runs/tensorboard)")
    parser.add_argument("--out", default="docs", help="folder for the PNGs (default docs)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium",
                        help="Chromium executable (Debian: apt-get install -y chromium)")
    args = parser.parse_args(argv)
    if not shutil.which(args.chromium):
        print(f"{args.chromium} not found: apt-get install -y chromium", file=sys.stderr)
        return 2
    runtime.use_tf1_behavior()
    ensure_events(args.logdir)
    os.makedirs(args.out, exist_ok=True)
    browser = Chromium(args.chromium, WIDTH, HEIGHT)
    try:
        graph_screenshot(browser, args.logdir, os.path.join(args.out, "tensorboard-graph.png"))
        scalar_screenshot(browser, args.logdir, os.path.join(args.out, "tensorboard-scalars.png"))
    finally:
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
