"""Run every method on every pair of a dataset and write results.csv, summary.md and reliability.png.

    python -m benchmarks.run_benchmark --data ../shared/data/acdc --dim 2 --output-dir bench/acdc2d \
        --methods ode syn synonly syncc elastix demons --iterations 800

Each (pair, method) runs in a fresh process, so peak memory is that method's own and one crash cannot take the
others down: a run that raises or dies leaves its pair unregistered for that method, and the summary lists it.
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import List, Optional

from tqdm import tqdm

from ODERegistrationLib.cli.main import add_parameter_options, parameters_from_arguments

from .dataset import DatasetError, load_pairs
from .evaluate import evaluate, failed, failure_reason
from .methods import METHODS
from .report import reliability_plot, summary_markdown, write_csv


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run_benchmark", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder with a manifest.json")
    parser.add_argument("--output-dir", type=Path, required=True)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--dim", type=int, choices=(2, 3), help="only 2-D or only 3-D pairs")
    parser.add_argument("--pairs", type=positive_count, help="only the first N pairs")
    parser.add_argument("--pair-ids", nargs="+", metavar="TEXT",
                        help="only the pairs whose id contains one of these texts (such as patient067 patient086)")
    parser.add_argument("--isotropic", type=int, metavar="N",
                        help="resample each fully labelled 3-D pair onto an N^3 isotropic cube around the labels")
    parser.add_argument("--whole-fov-spacing", type=float, metavar="MM",
                        help="resample each fully labelled pair's whole field of view to this isotropic spacing (a 3-D "
                             "stack becomes a volume; a 2-D pair gets another pixel size)")
    parser.add_argument("--stack-slices", action="store_true",
                        help="register every slice of each fully labelled 3-D pair that holds every evaluated label "
                             "in both label maps, as a 2-D pair")
    parser.add_argument("--reverse", action="store_true",
                        help="register each pair the other way round: the ES labels carried onto the ED image")
    parser.add_argument("--roi", nargs="+", choices=("auto", "whole"), default=["auto", "whole"],
                        help="run every method on the whole image, and/or on the box around the moving labels "
                             "(auto; '+roi' in the tables): the same box for every method")
    add_parameter_options(parser)  # the engine's options, exactly as the oderegistration command takes them
    parser.add_argument("--title", help="heading of summary.md (default: data folder and settings)")
    return parser


def positive_count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def main(argv: Optional[List[str]] = None) -> int:
    arguments = build_parser().parse_args(argv)
    parameters = parameters_from_arguments(arguments).replace(device="cpu")
    try:
        pairs = load_pairs(arguments.data, arguments.dim, arguments.pairs, arguments.isotropic,
                           arguments.whole_fov_spacing, arguments.stack_slices, arguments.reverse, arguments.pair_ids)
    except DatasetError as error:
        print(f"benchmark: {error}", file=sys.stderr)
        return 2
    missing = [m.missing() for name, m in METHODS.items() if name in arguments.methods and m.missing()]
    methods = [name for name in arguments.methods if METHODS[name].missing() is None]
    for message in missing:
        print(f"benchmark: {message}; skipped", file=sys.stderr)
    rows = []
    arguments.output_dir.mkdir(parents=True, exist_ok=True)
    context = multiprocessing.get_context("spawn")
    tasks = [(pair, method, region) for pair in pairs for region in arguments.roi for method in methods]
    with tqdm(total=len(tasks), desc="benchmark", unit="run") as bar:
        for pair, method, region in tasks:
            bar.set_postfix_str(f"{pair.id} {method} {region}")
            options = {"ode_parameters": parameters.replace(region=region), "region": region}
            try:
                with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                    rows.extend(pool.submit(evaluate, pair, method, options).result())
            except Exception as error:  # raised by the method, or its worker died: the others still run
                rows.extend(failed(pair, method, options, error))
                bar.write(f"benchmark: {method} ({region}) failed on {pair.id}: {failure_reason(error)}")
            if rows:  # a run stopped part way keeps what it scored
                write_csv(rows, arguments.output_dir / "results.csv")
            bar.update()
    methods = [name + suffix for suffix in [{"whole": "", "auto": "+roi"}[r] for r in arguments.roi] for name in methods]
    dims = {pair.dim for pair in pairs}
    title = arguments.title or (f"{arguments.data.name}, {dims.pop() if len(dims) == 1 else 'all'}-D pairs"
                                f"{f', resampled to {arguments.isotropic}^3' if arguments.isotropic else ''}"
                                f"{f', whole field of view at {arguments.whole_fov_spacing:g} mm' if arguments.whole_fov_spacing else ''}"
                                f"{', every fully labelled slice of the stacks as a 2-D pair' if arguments.stack_slices else ''}"
                                f"{', reversed (ES labels onto ED)' if arguments.reverse else ''}, ode preset "
                                f"{arguments.preset}: at most {parameters.iterations} iterations "
                                f"({parameters.iterations_3d} for volumes), {parameters.levels} levels, "
                                f"similarity {parameters.similarity} (whole image {parameters.similarity_whole_image}, "
                                f"volumes {parameters.similarity_3d}), mode {parameters.mode}, "
                                f"regions {' '.join(arguments.roi)}")
    summary = summary_markdown(rows, methods, missing, title)
    (arguments.output_dir / "summary.md").write_text(summary)
    reliability_plot(rows, methods, arguments.output_dir / "reliability.png", title)
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
