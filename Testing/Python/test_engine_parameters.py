"""Presets, parameter checks, early stopping and the command line's preset handling."""
import pytest

from ODERegistrationLib.cli.main import build_parser, parameters_from_arguments
from ODERegistrationLib.engine.optimizer import _converged
from ODERegistrationLib.engine.parameters import PRESETS, RegistrationParameters


def test_paper_preset_is_the_published_configuration():
    paper = PRESETS["paper"]
    assert (paper.iterations, paper.levels, paper.learning_rate, paper.regularization_lambda) == (800, 2, 5e-4, 5.0)
    assert (paper.similarity, paper.conv_layers, paper.channels, paper.kernel_size_2d) == ("mi+ssim", 4, 24, 5)
    assert paper.net_downsampling == 1 and paper.convergence_tolerance == 0.0
    assert (paper.working_spacing_mm, paper.folding_weight, paper.region) == (0.0, 0.0, "whole")
    assert paper.iterations_3d == 800 and paper.inverse_refinement_steps == 0
    assert paper.inverse_consistency_weight == 0.5 and paper.magnitude_weight == 2.5


def test_defaults_are_the_fast_preset():
    assert PRESETS["fast"] == RegistrationParameters()


@pytest.mark.parametrize("change", [{"iterations": 0}, {"levels": 9}, {"similarity": "ncc"}, {"mode": "4d"},
                                    {"net_downsampling": 0}, {"kernel_size_2d": 4}, {"working_spacing_mm": -1.0},
                                    {"learning_rate": 2.0}, {"folding_weight": -1.0},
                                    {"iterations_3d": 0}, {"inverse_refinement_steps": -1}, {"region": "box"},
                                    {"region_margin_mm": -1.0}, {"smoothing_sigma_mm": -0.5}])
def test_invalid_parameters_are_refused(change):
    with pytest.raises(ValueError):
        RegistrationParameters(**change)


def test_early_stop_only_when_the_loss_stalls_after_the_similarity_improved():
    parameters = RegistrationParameters(convergence_tolerance=1e-3, convergence_window=10)
    moved = [-1.0] + [-1.5] * 39
    assert not _converged([-1.0 - 0.01 * i for i in range(40)], moved, parameters)  # still improving
    assert _converged([-1.0] * 40, moved, parameters)
    assert not _converged([-1.0] * 15, moved[:15], parameters)  # too early to tell
    assert not _converged([-1.0] * 40, moved, parameters.replace(convergence_tolerance=0.0))
    assert not _converged([-1.0] * 40, [-1.0] * 40, parameters)  # a flat start is not convergence


def test_a_slow_start_is_not_stopped_at_the_identity_and_is_flagged(small_2d_pair):
    """With a tiny learning rate the loss stalls from the start: the old early stop ended the run at iteration
    2 x window = 100 with the identity map and no warning."""
    from ODERegistrationLib.engine import register_images

    slow = RegistrationParameters(learning_rate=1e-7, iterations=130, region="whole")
    report = register_images(small_2d_pair["fixed"], small_2d_pair["moving"], slow).report
    assert report["iterations"] == 130
    assert any("did not improve" in warning for warning in report["warnings"])
    normal = register_images(small_2d_pair["fixed"], small_2d_pair["moving"], slow.replace(learning_rate=5e-4))
    assert normal.report["warnings"] == []


def test_command_line_preset_with_overrides():
    arguments = build_parser().parse_args(["demo", "--preset", "paper", "--iterations", "5", "--seed", "2"])
    parameters = parameters_from_arguments(arguments)
    assert parameters == PRESETS["paper"].replace(iterations=5, seed=2)
    assert parameters_from_arguments(build_parser().parse_args(["demo"])) == PRESETS["fast"]
