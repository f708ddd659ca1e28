"""Registration parameters: one frozen dataclass, so that a run is fully described by one value.

Each field carries everything the rest of the product needs to know about it (:class:`Spec`: help text, allowed
range or choices, the paper's value, panel label): the command-line options, the Slicer panel's parameter node,
the presets and the checks below are derived from it, and tests hold the .ui and the preset files to it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

SIMILARITIES = ("mi+ssim", "lncc", "ssim", "mse", "mi")
LNCC_FIRST = ("lncc",) + tuple(name for name in SIMILARITIES if name != "lncc")
"""The similarities, LNCC first: the choices of the parameters whose default is LNCC (first in the panel's list)."""
REGIONS = ("auto", "whole")
MODES = ("auto", "2d", "3d", "slices")
DEVICES = ("auto", "cpu", "cuda", "mps")
MAX_LEARNING_RATE = 1.0
"""Adam moves every weight by up to the learning rate per step: above 1 the net's weights, which start near 0.1,
are thrown around and the run can only diverge."""


@dataclass(frozen=True)
class Spec:
    """What the product knows about one parameter besides its default."""

    help: str
    label: str
    """Its name in the Slicer panel."""
    paper: Any
    """The published configuration's value (the ``paper`` preset)."""
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: Tuple[str, ...] = ()
    flag: Optional[str] = None
    """Command-line option, when not ``--`` + the name with dashes."""
    advanced: bool = True
    """Shown under Advanced in the panel."""


def _parameter(default: Any, help: str, label: str, paper: Any = None, **spec: Any):
    """A dataclass field with its :class:`Spec`; ``paper`` defaults to ``default`` (the paper's own value)."""
    return field(default=default, metadata={"spec": Spec(help, label, default if paper is None else paper, **spec)})


@dataclass(frozen=True)
class RegistrationParameters:
    """Settings of the multi-resolution ODE registration; the defaults are the measured best
    (docs/benchmarks.md), the ``paper`` values the published configuration.

    The regularization weights follow the paper: alpha = 1/K for inverse consistency and gamma = lambda/K for the
    displacement magnitude, K being the number of pyramid levels.
    """

    iterations: int = _parameter(
        250, "most Adam iterations for 2-D images and slice stacks (Dice peaks around 250 on the benchmark)",
        "Iterations (2-D, stacks)", 800, minimum=1, maximum=100000, advanced=False)
    iterations_3d: int = _parameter(
        200, "most Adam iterations for volumes registered in 3-D", "Iterations (volumes)", 800,
        minimum=1, maximum=100000, advanced=False)
    levels: int = _parameter(2, "pyramid levels K", "Pyramid levels", minimum=1, maximum=6, advanced=False)
    similarity: str = _parameter(
        "mi+ssim", "similarity of the warped and the target image, both ways, for 2-D images and a stack's slices "
        "fitted in a region", "Similarity", choices=SIMILARITIES, advanced=False)
    similarity_3d: str = _parameter(
        "lncc", "similarity for volumes registered in 3-D (a whole-field-of-view volume moves with the local LNCC, "
        "not with MI over the whole volume)", "Similarity (volumes)", "mi+ssim", choices=LNCC_FIRST, advanced=False)
    similarity_whole_image: str = _parameter(
        "lncc", "similarity for 2-D images and a stack's slices fitted on the whole image, not in a region (on the "
        "benchmark's whole images LNCC gained Dice over MI + SSIM in 2-D and on the stacks; in a region it did not)",
        "Similarity (whole image)", "mi+ssim", choices=LNCC_FIRST, advanced=False)
    lncc_window: int = _parameter(
        7, "side of LNCC's local window, in voxels of each pyramid level (odd; VoxelMorph uses 9 at full "
        "resolution, the working levels here are coarser)", "LNCC window (voxels)", minimum=3, maximum=31)
    region: str = _parameter(
        "auto", "where the map is fitted: auto = the box of the moving labels (else of the fixed mask, else of the "
        "moving mask) plus the margin, continued smoothly to the identity outside; whole = the whole image",
        "Region", "whole", choices=REGIONS, advanced=False, flag="--roi")
    region_margin_mm: float = _parameter(25.0, "margin around the labels' box of the automatic region, in mm",
                                         "Region margin (mm)", minimum=0.0, maximum=500.0, flag="--roi-margin-mm",
                                         advanced=False)
    mode: str = _parameter("auto", "2d, 3d, or slices (2-D per slice of a thick-slice stack); auto decides from "
                           "the spacing", "Mode", choices=MODES, advanced=False)
    device: str = _parameter("auto", "where torch runs: auto = CUDA, else MPS, else CPU", "Device", choices=DEVICES,
                             advanced=False)
    threads: int = _parameter(
        0, "CPU threads torch computes with (0: as many as torch starts with, one per core, except in the Slicer "
        "panel, which leaves one core to the interface); a fit depends on the count beyond its last digits, so a "
        "report records the count it used", "CPU threads", minimum=0, maximum=1024)
    learning_rate: float = _parameter(5e-4, "Adam learning rate", "Learning rate", minimum=1e-7,
                                      maximum=MAX_LEARNING_RATE)
    warmup_iterations: int = _parameter(
        30, "Adam's rate rises linearly to the learning rate over this many first iterations: Adam's first steps "
        "move every weight by the full rate whatever its gradient, and on a whole-field-of-view volume the net "
        "answers that random jump by switching off its deeper ReLUs, after which it cannot move (0: the paper's "
        "constant rate)", "Warm-up iterations", 0, minimum=0, maximum=10000)
    regularization_lambda: float = _parameter(5.0, "weight of the displacement penalty ||D - x||^2; gamma = "
                                              "lambda / K", "Regularization lambda", minimum=0.0, maximum=1000.0,
                                              flag="--lambda")
    smoothing_sigma_mm: float = _parameter(
        3.125, "Gaussian LowPass of the velocity, in mm, on the net grid of every level (the paper's 2 voxels at "
        "1.5625 mm)", "Velocity smoothing sigma (mm)", minimum=0.0, maximum=50.0)
    through_plane_sigma_mm: float = _parameter(
        20.0, "thick-slice stacks in a region of interest: a 3-D map of the region, its velocity smoothed this much "
        "(mm), is fitted first for the through-plane motion the slices cannot follow, then each slice in-plane; the "
        "maps are composed (0: the slices only; at 10 mm the composed inverse folded on one benchmark stack; a whole "
        "image keeps the slices only, where the map lost Dice)",
        "Through-plane smoothing (mm)", 0.0, minimum=0.0, maximum=50.0)
    net_downsampling: int = _parameter(
        2, "the net, its velocity and exp live on a grid this many times coarser than each level",
        "Net grid coarsening", 1, minimum=1, maximum=16)
    working_spacing_mm: float = _parameter(
        3.2, "the finest level is the image halved while its spacing stays at most this, in mm; the fields are "
        "upsampled at the end (0: full resolution)", "Working resolution (mm)", 0.0, minimum=0.0, maximum=20.0)
    min_working_voxels: int = _parameter(
        10000, "the image (each slice, in a stack) is halved towards the working resolution only while it keeps at "
        "least this many voxels: a small crop keeps its detail, which the similarity needs against the "
        "regularizers; a cine, hundreds of slices in one batch, trades some of it for the iterations that large "
        "motion needs", "Smallest working image (voxels)", minimum=1, maximum=100000000)
    folding_weight: float = _parameter(
        100.0, "weight of the folding guard mean(max(0, 0.1 - det J)), zero unless a map compresses tenfold",
        "Folding guard weight", 0.0, minimum=0.0, maximum=10000.0)
    inverse_refinement_steps: int = _parameter(
        20, "fixed-point steps that make the backward map the numerical inverse of the forward one on the whole "
        "fixed grid, except where that would fold (0: the net's backward map as it is)", "Inverse refinement steps",
        0, minimum=0, maximum=1000)
    convergence_tolerance: float = _parameter(
        1e-3, "stop when the best loss of the last window improved by less than this fraction on the window "
        "before, once the similarity improved by 1 % (0: run every iteration)", "Early-stop tolerance", 0.0,
        minimum=0.0, maximum=1.0)
    convergence_window: int = _parameter(50, "iterations per window of the early stop", "Early-stop window",
                                         minimum=1, maximum=10000)
    conv_layers: int = _parameter(4, "convolution layers of the net", "Net layers", minimum=2, maximum=16)
    channels: int = _parameter(24, "filters per layer of the net", "Net filters", minimum=1, maximum=256)
    kernel_size_2d: int = _parameter(5, "convolution kernel size in 2-D (odd)", "Kernel size (2-D)",
                                     minimum=1, maximum=15)
    kernel_size_3d: int = _parameter(3, "convolution kernel size in 3-D (odd)", "Kernel size (3-D)",
                                     minimum=1, maximum=15)
    integration_steps: int = _parameter(7, "scaling-and-squaring steps of exp", "Integration steps",
                                        minimum=0, maximum=20)
    seed: int = _parameter(
        0, "seed of the net's initial weights (a run is reproducible bit for bit on the same CPU with the same "
        "threads; not on a CUDA GPU, where torch has no deterministic gradient of grid_sample)", "Random seed",
        minimum=0, maximum=2**31 - 1)

    def __post_init__(self) -> None:
        for name, spec in specs().items():
            value = getattr(self, name)
            text = name.replace("_", " ")
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{text} must be a finite number, not {value}")
            if spec.choices and value not in spec.choices:
                raise ValueError(f"{text} must be one of {', '.join(spec.choices)}, not {value!r}")
            if spec.minimum is not None and not spec.minimum <= value <= spec.maximum:
                raise ValueError(f"{text} must be between {_number(spec.minimum)} and {_number(spec.maximum)}, "
                                 f"not {_number(value)}")
        if self.kernel_size_2d % 2 == 0 or self.kernel_size_3d % 2 == 0:
            raise ValueError("kernel sizes must be odd")
        if self.lncc_window % 2 == 0:
            raise ValueError(f"lncc window must be odd (a window centred on its voxel), not {self.lncc_window}")

    @property
    def inverse_consistency_weight(self) -> float:
        """alpha = 1/K."""
        return 1.0 / self.levels

    @property
    def magnitude_weight(self) -> float:
        """gamma = lambda/K."""
        return self.regularization_lambda / self.levels

    def replace(self, **changes) -> "RegistrationParameters":
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, Any], source: str = "parameters") -> "RegistrationParameters":
        """From a preset or a report's ``parameters``; an unknown name is refused (ValueError naming it)."""
        unknown = sorted(set(values) - set(specs()))
        if unknown:
            raise ValueError(f"{source}: unknown parameter {unknown[0]!r} (known: {', '.join(specs())})")
        try:
            return cls(**{name: _from_file(name, value) for name, value in values.items()})
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: {error}") from None


def _from_file(name: str, value: Any) -> Any:
    """A value read from a JSON file as the parameter's type; a number where a number belongs, a whole one for a
    whole-number parameter (int() would turn 100.5 iterations into 100, and true into 1, without a word)."""
    kind = field_type(name)
    if kind is str:
        return str(value)
    text = name.replace("_", " ")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{text} must be a number, not {json.dumps(value)}")
    if kind is int and not float(value).is_integer():
        raise ValueError(f"{text} must be a whole number, not {value!r}")
    return kind(value)


def specs() -> Dict[str, Spec]:
    """Every parameter's :class:`Spec`, in the dataclass' order."""
    return {f.name: f.metadata["spec"] for f in dataclasses.fields(RegistrationParameters)}


def defaults() -> Dict[str, Any]:
    return RegistrationParameters().as_dict()


def field_type(name: str) -> type:
    """int, float or str: the parameter's Python type."""
    return type(defaults()[name])


def _number(value: float) -> str:
    """A whole number in full (a seed's 2147483647, not 2.14748e+09), any other as short as it reads."""
    return str(value) if isinstance(value, int) else f"{value:g}"


def option_flag(name: str) -> str:
    return specs()[name].flag or "--" + name.replace("_", "-")


_OPTION_AND_VALUE = re.compile(r"(--[a-z0-9-]+)(?: ((?:[^\s),;:.]|\.(?=[^\s),;:.]))+))?")
"""An option and the word after it; a value may hold a decimal point, not a full stop."""


def in_panel_words(message: str) -> str:
    """``message`` with each parameter's command-line option named by its label in the Slicer panel (``--roi auto``
    as ``Region = auto``): the engine's advice is worded for the command line, whose options a panel user never
    sees. Other options (``--time-axis``) and words after an option that are not its value stay as they are."""
    names = {option_flag(name): name for name in specs()}

    def panel_words(match: "re.Match[str]") -> str:
        flag, value = match.groups()
        if flag not in names:
            return match.group(0)
        spec = specs()[names[flag]]
        if value is None:
            return spec.label
        return f"{spec.label} = {value}" if _is_value_of(spec, value) else f"{spec.label} {value}"

    return _OPTION_AND_VALUE.sub(panel_words, message)


def _is_value_of(spec: Spec, word: str) -> bool:
    if spec.choices:
        return word in spec.choices
    try:
        float(word)
    except ValueError:
        return False
    return True


def markdown_table() -> str:
    """docs/parameters.md: every parameter with its option, default, paper value, range and help."""
    rows = ["| parameter | option | default | paper | allowed | what |", "|---|---|---|---|---|---|"]
    for name, spec in specs().items():
        allowed = ", ".join(spec.choices) if spec.choices else f"{_number(spec.minimum)} to {_number(spec.maximum)}"
        rows.append(f"| `{name}` | `{option_flag(name)}` | {defaults()[name]} | {spec.paper} | {allowed} | "
                    f"{spec.help} |")
    return ("# Parameters\n\nGenerated from `ODERegistrationLib/engine/parameters.py` (the one place they are "
            "defined) by `python -c \"from ODERegistrationLib.engine.parameters import markdown_table; "
            "print(markdown_table(), end='')\" > docs/parameters.md`; a test keeps it current. The same values "
            "drive the command line, the Slicer panel and the preset files.\n\n" + "\n".join(rows) + "\n")
