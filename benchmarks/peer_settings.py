"""The benchmark with the peers also at settings other than theirs, to check that each runs at its best
(docs/benchmarks.md, "The peers at other settings"):

    python -m benchmarks.peer_settings --data ../shared/data/acdc --dim 2 --output-dir bench/peers \
        --methods syncc demons_sigma1 demons elastix_grid5 elastix

Every option is run_benchmark's; the variants below are added to its methods.
"""
from __future__ import annotations

import sys

from . import run_benchmark
from .methods import METHODS, Method, demons, elastix

VARIANTS = [Method(f"demons_sigma{sigma:g}", "SimpleITK", demons(sigma=sigma)) for sigma in (1.0, 2.0, 3.0)] + \
    [Method(f"elastix_grid{spacing}", "itk", elastix(grid_spacing_mm=spacing)) for spacing in (5, 20)]
METHODS.update({variant.name: variant for variant in VARIANTS})  # at import: spawned workers look them up too

if __name__ == "__main__":
    sys.exit(run_benchmark.main())
