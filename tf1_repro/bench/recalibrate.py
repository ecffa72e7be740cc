"""Benchmark of ``recalibrate`` (not a test): memory stays flat and each pass runs near prediction speed.

``make bench-recalibrate`` (``python -m tf1_repro.bench.recalibrate``) trains
the demo model (the article's two BN layers, 300 steps) and recalibrates it over
``--samples`` generated samples (default 1,000,000) from a generator FUNC that
draws each batch when asked (nothing is held), so memory may not grow with the
data. The generator reads the process's resident set size (RSS) every
``RSS_EVERY`` batches. Plain prediction throughput is timed on the same
generated data with the same feeds (``predictions`` in prediction mode, one
``session.run`` per batch) before and after the recalibration; the ratio per
pass is ``recalibration samples/s / prediction samples/s`` (target >= 0.8).
"""

import argparse
import json
import os
import resource
import tempfile
import time

import numpy as np

RSS_EVERY = 50


def _rss_mb():
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def generator(samples, batch, rss):
    """FUNC() yielding {"x": batch} of Blobs samples, drawn per batch from a seed (same data every call)."""
    from tf1_repro.model import data  # pylint: disable=import-outside-toplevel
    dataset = data.Blobs(seed=0)

    def batches():
        for i, start in enumerate(range(0, samples, batch)):
            x, _ = dataset.sample(min(batch, samples - start), np.random.default_rng([7, i]))
            if i % RSS_EVERY == 0:
                rss.append(_rss_mb())
            yield {"x": x}
    return batches


def _prediction_pass(prefix, func, feeds):
    """Samples/s of plain prediction (fetch ``ArgMax``) over ``func()``'s batches with the mode
    ``feeds`` ({name: value}, those recalibrate uses), one ``Session.make_callable`` call per
    batch, as recalibrate's passes run."""
    from tf1_repro.graph import artefacts  # pylint: disable=import-outside-toplevel
    graph, sess = artefacts.load(prefix).open()
    with sess:
        x, predictions = graph.get_tensor_by_name("x:0"), graph.get_tensor_by_name("ArgMax:0")
        modes = [graph.get_tensor_by_name(name + ":0") for name in feeds]
        graph.finalize()
        run = sess.make_callable(predictions, feed_list=[x] + modes)
        count, started = 0, time.perf_counter()
        for batch in func():
            run(batch["x"], *feeds.values())
            count += len(batch["x"])
        return count / (time.perf_counter() - started)


def run(samples=1_000_000, batch=1000, rounds=3, out_dir=None, log=print):
    """Train the demo model, then ``rounds`` x (plain prediction pass, recalibration) over ``samples``
    generated samples; medians over rounds (the machine is shared, so single timings are noisy)."""
    from tf1_repro import progress  # pylint: disable=import-outside-toplevel
    from tf1_repro.tools import recalibrate as rc  # pylint: disable=import-outside-toplevel
    from tf1_repro.model import demo  # pylint: disable=import-outside-toplevel
    out_dir = out_dir or tempfile.mkdtemp(prefix="tf1_repro_recalibrate_bench_")
    trained = demo.run_demo(steps=300, out_dir=os.path.join(out_dir, "demo"), log=lambda _: None)
    rss = []
    func = generator(samples, batch, rss)
    data = rc.Data(f"recalibrate_bench.generator({samples}, {batch})", "generator", func=func)
    from tf1_repro.graph import artefacts  # pylint: disable=import-outside-toplevel
    feeds = {name.split(":")[0]: value
             for name, value in artefacts.load(trained["checkpoint"]).find().prediction_feeds().items()}
    predict, passes, readings = [], {}, []
    for r in range(rounds):
        log(f"round {r + 1}/{rounds}: plain prediction over {samples:,} samples, then recalibration")
        predict.append(_prediction_pass(trained["checkpoint"], func, feeds))
        rss.clear()
        report = rc.recalibrate(trained["checkpoint"], data, os.path.join(out_dir, "recalibrated"),
                                force=True, progress=progress.factory())
        readings.append(list(rss))
        for p in report["passes"]["per_pass"]:
            passes.setdefault(p["name"], []).append(p["samples_per_second"])
    used = {f["name"]: f["value"] for f in report["feeds"]}
    if used != feeds:
        raise RuntimeError(f"recalibrate ran with feeds {used}, the prediction baseline with {feeds}")
    median = float(np.median(predict))
    rates = {name: float(np.median(values)) for name, values in passes.items()}
    flat = [mb for round_readings in readings for mb in round_readings]
    return {
        "samples": samples, "batch_size": batch, "rounds": rounds, "feeds": feeds,
        "bn_layers": [l["name"] for l in report["layers"]], "passes": report["passes"]["total"],
        "prediction_samples_per_second": {"median": median, "rounds": predict},
        "passes_samples_per_second": rates, "passes_rounds": passes,
        "ratio_to_prediction": {name: rate / median for name, rate in rates.items()},
        "rss_mb": {"first": flat[0], "min": min(flat), "max": max(flat), "last": flat[-1],
                   "readings": len(flat), "per_round_max": [max(r) for r in readings],
                   "growth_within_round": [r[-1] - r[0] for r in readings]},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "checks_ok": report["checks_ok"],
        "layers": [{k: l[k] for k in ("name", "depth", "values_per_channel",
                                      "largest_variance_change_relative", "check")} for l in report["layers"]],
    }


def format_bench(result):
    lines = [f"recalibrate benchmark: demo model ({', '.join(result['bn_layers'])}), "
             f"{result['samples']:,} generated samples in batches of {result['batch_size']}, "
             f"{result['passes']} passes; medians of {result['rounds']} rounds",
             "  feeds (both loops): " + ", ".join(f"{k}={v}" for k, v in sorted(result["feeds"].items())),
             f"  plain prediction: {result['prediction_samples_per_second']['median']:,.0f} samples/s "
             f"(rounds: {', '.join(f'{v:,.0f}' for v in result['prediction_samples_per_second']['rounds'])})"]
    for name, rate in result["passes_samples_per_second"].items():
        ratio = result["ratio_to_prediction"][name]
        lines.append(f"  {name:<40} {rate:>10,.0f} samples/s  {ratio:.2f}x prediction")
    rss = result["rss_mb"]
    lines.append(f"  RSS during recalibration ({rss['readings']} readings, every {RSS_EVERY} batches): "
                 f"first {rss['first']:.1f} MB, min {rss['min']:.1f}, max {rss['max']:.1f}, last "
                 f"{rss['last']:.1f}; growth within each round "
                 f"{', '.join(f'{g:+.1f}' for g in rss['growth_within_round'])} MB; peak RSS of the "
                 f"process {result['peak_rss_mb']:.0f} MB")
    lines.append(f"  checks on the result: {'all hold' if result['checks_ok'] else 'FAILED'}")
    return "\n".join(lines)


def main(argv=None):
    from tf1_repro import runtime  # pylint: disable=import-outside-toplevel
    parser = argparse.ArgumentParser(prog="python -m tf1_repro.bench.recalibrate",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1_000_000, help="generated samples (1,000,000)")
    parser.add_argument("--batch-size", type=int, default=1000, help="samples per batch (1000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of prediction + recalibration (3)")
    parser.add_argument("--out", default="runs/recalibrate-bench", help="work directory")
    parser.add_argument("--json", metavar="OUT", help="write the numbers as JSON")
    args = parser.parse_args(argv)
    runtime.use_tf1_behavior()
    result = run(args.samples, args.batch_size, args.rounds, args.out)
    print(format_bench(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
