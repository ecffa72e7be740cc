"""Record what the saved-model tools print on the test suite's models, to compare before and after
a refactor (``find``, ``doctor``, ``to-inference``, ``recalibrate``, ``migrate``).

Usage::

    # build the suite's artefacts once (with any checkout's code), then record a checkout's output
    python scripts/snapshot_tools.py build ARTEFACTS_DIR
    python scripts/snapshot_tools.py record ARTEFACTS_DIR OUT.json [--checkout DIR]
    python scripts/snapshot_tools.py compare BEFORE.json AFTER.json [--commands find,doctor]

``record`` runs ``python -m tf1_repro COMMAND`` with the checkout as the working directory (so that
checkout's package is the one imported) on every case of ``tests/model_suite.SUITE`` that the
command takes, each with ``--json``. The JSON is kept with the fields that hold times, sizes on disk
or paths dropped, and the exit status beside it. ``compare`` prints every difference and exits 1
when there is one. The same artefacts must be used for both records (training is not bit-exact
from one build to the next), which is why they are built once, apart.
"""

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Keys whose values are times, file sizes or paths (they change from run to run or with the folder):
# a key is dropped when one of its words (split at "_", a plural "s" ignored) is one of these, so
# "out" drops ``out`` and ``out_dir`` but keeps ``outputs`` and ``dropouts_removed``.
VOLATILE = ("second", "latency", "time", "ms", "size", "byte", "path", "source", "out",
            "written", "file", "dir", "checkpoint", "scratch", "passe", "rss", "memory")


def _volatile(key):
    words = [w[:-1] if w.endswith("s") and len(w) > 3 else w for w in key.lower().split("_")]
    return any(w in VOLATILE for w in words)


def _suite():
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import model_suite  # pylint: disable=import-outside-toplevel,import-error
    return model_suite


def build(artefacts_dir):
    """Build every case of the suite into ARTEFACTS_DIR and write ARTEFACTS_DIR/cases.json."""
    from tf1_repro import runtime  # pylint: disable=import-outside-toplevel
    runtime.use_tf1_behavior()
    suite = _suite()
    cases = {}
    for name, case in sorted(suite.SUITE.items()):
        path = suite.build_case(name, artefacts_dir)
        inputs = {k: list(v) for k, v in case.inputs.items()}
        cases[name] = {"path": path, "format": case.format, "inputs": inputs,
                       "outputs": list(case.outputs)}
        if case.inputs:  # the same data for every record
            rng = np.random.default_rng(0)
            data = {k.split(":")[0]: rng.normal(3.0, 2.0, (64,) + tuple(s for s in v[1:]))
                    .astype(np.float32) for k, v in case.inputs.items()}
            np.savez(os.path.join(artefacts_dir, name + ".npz"), **data)
            cases[name]["data"] = os.path.join(artefacts_dir, name + ".npz")
        print(f"{name:36s} {path}")
    with open(os.path.join(artefacts_dir, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, indent=1)


def _commands(name, case, scratch):
    out = os.path.join(scratch, name)
    data = ["--data", case["data"]] if "data" in case else []
    yield "find", ["find", case["path"]]
    yield "doctor", ["doctor", case["path"]]
    if case["outputs"]:
        yield "to-inference", ["to-inference", case["path"], "--outputs", ",".join(case["outputs"]),
                               "--out", out + "-serve", "--latency-runs", "0", "--quiet"] + data
    if case["format"] == "checkpoint" and data:
        yield "recalibrate", ["recalibrate", case["path"], "--out", out + "-recal", "--quiet"] + data
    if case["format"] in ("checkpoint", "meta_graph"):
        yield "migrate", ["migrate", case["path"], "--to", "keras3", "--out", out + "-k3"] + data


def _clean(value, scratch, artefacts):
    if isinstance(value, dict):
        return {k: _clean(v, scratch, artefacts) for k, v in value.items()
                if not _volatile(k)}
    if isinstance(value, list):
        return [_clean(v, scratch, artefacts) for v in value]
    if isinstance(value, str):
        return value.replace(scratch, "<scratch>").replace(artefacts, "<artefacts>")
    if isinstance(value, float):
        return float(f"{value:.6g}")
    return value


def _drop_volatile(value):
    """``value`` without the keys ``VOLATILE`` names (a record made with an older list)."""
    if isinstance(value, dict):
        return {k: _drop_volatile(v) for k, v in value.items()
                if not _volatile(k)}
    if isinstance(value, list):
        return [_drop_volatile(v) for v in value]
    return value


def _run(checkout, key, args, scratch, artefacts):
    json_path = os.path.join(scratch, key.replace("/", "_") + ".json")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-m", "tf1_repro"] + args + ["--json", json_path],
                          cwd=checkout, capture_output=True, text=True, env=env, check=False)
    report = None
    if os.path.exists(json_path):
        with open(json_path, encoding="utf-8") as f:
            report = json.load(f)
    stderr = [line for line in proc.stderr.splitlines() if line.startswith("python -m tf1_repro")]
    return key, {"exit": proc.returncode, "json": _clean(report, scratch, artefacts),
                 "error": _clean(stderr, scratch, artefacts)}


def record(artefacts_dir, out, checkout, jobs=2, commands=None):
    """Run every command (or those in ``commands``) on every case with CHECKOUT's code; write
    {case/command: result}."""
    artefacts = os.path.abspath(artefacts_dir)
    with open(os.path.join(artefacts, "cases.json"), encoding="utf-8") as f:
        cases = json.load(f)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        todo = [(f"{name}/{command}", args) for name, case in sorted(cases.items())
                for command, args in _commands(name, case, scratch)
                if not commands or command in commands]
        with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
            futures = [pool.submit(_run, checkout, key, args, scratch, artefacts) for key, args in todo]
            for future in concurrent.futures.as_completed(futures):
                key, result = future.result()
                results[key] = result
                print(f"{key:50s} exit {result['exit']}", flush=True)
    with open(out, "w", encoding="utf-8") as f:
        json.dump(dict(sorted(results.items())), f, indent=1, sort_keys=True)


def _diff(a, b, where, lines):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                lines.append(f"{where}/{k}: {'only after' if k not in a else 'only before'}")
            else:
                _diff(a[k], b[k], f"{where}/{k}", lines)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _diff(x, y, f"{where}[{i}]", lines)
    elif a != b and not (isinstance(a, float) and isinstance(b, float) and a != a and b != b):
        lines.append(f"{where}: {json.dumps(a)[:300]} -> {json.dumps(b)[:300]}")


def compare(before, after, commands=None):
    """Print each difference between two records (on ``commands`` only, when given); 1 when any,
    else 0."""
    with open(before, encoding="utf-8") as f:
        a = json.load(f)
    with open(after, encoding="utf-8") as f:
        b = json.load(f)
    if commands:
        a = {k: v for k, v in a.items() if k.split("/")[-1] in commands}
        b = {k: v for k, v in b.items() if k.split("/")[-1] in commands}
    lines = []
    _diff(_drop_volatile(a), _drop_volatile(b), "", lines)
    print("\n".join(lines) if lines else f"identical: {len(a)} runs")
    return 1 if lines else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("build")
    p.add_argument("artefacts_dir")
    p = sub.add_parser("record")
    p.add_argument("artefacts_dir")
    p.add_argument("out")
    p.add_argument("--checkout", default=ROOT, help="the repository whose code runs (default: this one)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--commands", help="comma-separated subset of find,doctor,to-inference,"
                   "recalibrate,migrate (default all)")
    p = sub.add_parser("compare")
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--commands", help="compare only these commands (comma-separated)")
    args = parser.parse_args(argv)
    if args.what == "build":
        build(args.artefacts_dir)
        return 0
    if args.what == "record":
        record(args.artefacts_dir, args.out, os.path.abspath(args.checkout), args.jobs,
               args.commands.split(",") if args.commands else None)
        return 0
    return compare(args.before, args.after,
                   args.commands.split(",") if args.commands else None)


if __name__ == "__main__":
    sys.exit(main())
