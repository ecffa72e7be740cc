"""Benchmarks (``make bench*``), never run as timed tests: ``layers`` (the article's layer,
fast_bn_layer, the fused kernel: ``python -m tf1_repro bench``), ``inference`` (what BN costs at
serving: ``bench-inference``), ``doctor`` (ResNet-50-sized diagnosis) and ``recalibrate``
(a million samples streamed)."""
