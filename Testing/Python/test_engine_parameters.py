"""Presets, parameter checks, early stopping and the command line's preset handling."""
import codecs
import json

import pytest
import torch

from ODERegistrationLib.cli.main import build_parser, parameters_from_arguments
from ODERegistrationLib.engine.core.optimizer import _converged
from ODERegistrationLib.engine.parameters import RegistrationParameters, defaults, specs
from ODERegistrationLib.engine.presets import (load_preset, preset_description, preset_files, save_preset,
                                               user_preset_path)


def test_paper_preset_is_the_published_configuration():
    paper = load_preset("paper")
    assert (paper.iterations, paper.levels, paper.learning_rate, paper.regularization_lambda) == (800, 2, 5e-4, 5.0)
    assert (paper.similarity, paper.conv_layers, paper.channels, paper.kernel_size_2d) == ("mi+ssim", 4, 24, 5)
    assert paper.net_downsampling == 1 and paper.convergence_tolerance == 0.0
    assert (paper.working_spacing_mm, paper.folding_weight, paper.region) == (0.0, 0.0, "whole")
    assert paper.iterations_3d == 800 and paper.inverse_refinement_steps == 0
    assert paper.inverse_consistency_weight == 0.5 and paper.magnitude_weight == 2.5


def test_the_shipped_preset_files_are_the_dataclass_defaults_and_paper_values():
    """Presets are data (ODERegistrationLib/presets); the values they hold are defined once, in the dataclass."""
    assert set(preset_files()) >= {"fast", "paper", "sequence"}
    assert load_preset("fast") == RegistrationParameters()
    assert load_preset("paper").as_dict() == {name: spec.paper for name, spec in specs().items()}
    for name in ("fast", "paper", "sequence"):  # every parameter listed: a preset keeps its meaning when defaults change
        assert set(json.loads(preset_files()[name].read_text())["parameters"]) == set(specs())


def test_a_user_preset_cannot_take_a_shipped_name_so_paper_stays_the_published_method(tmp_path):
    """The panel reads the user's preset folder too, where a saved 'paper' used to win over the shipped one."""
    save_preset(RegistrationParameters(iterations=3), tmp_path / "paper.json")
    save_preset(RegistrationParameters(iterations=4), tmp_path / "mine.json")
    assert preset_files([tmp_path])["paper"] == preset_files()["paper"]
    assert load_preset("paper", [tmp_path]) == load_preset("paper")
    assert load_preset("mine", [tmp_path]).iterations == 4
    assert user_preset_path(tmp_path, " mine ") == tmp_path / "mine.json"
    for name, message in (("paper", "a shipped preset has it"), ("../elsewhere", "without folders"), ("", "plain")):
        with pytest.raises(ValueError, match=message):
            user_preset_path(tmp_path, name)


def test_a_bad_file_in_the_user_preset_folder_cannot_stop_the_panel_from_opening(tmp_path):
    """The panel lists every preset with its description at setup; one file that is not JSON raised there."""
    (tmp_path / "broken.json").write_text("{ not json")
    (tmp_path / "a_list.json").write_text("[1, 2]")
    save_preset(RegistrationParameters(iterations=3), tmp_path / "mine.json", "three iterations")
    assert preset_description("mine", [tmp_path]) == "three iterations"
    for name in ("broken", "a_list"):
        assert preset_description(name, [tmp_path]).startswith("not a preset file")
        with pytest.raises(ValueError, match="not a preset or report file"):
            load_preset(name, [tmp_path])


def test_a_preset_saved_by_a_windows_editor_is_read(tmp_path):
    """Notepad starts a UTF-8 file with a byte-order mark, which json refused: 'Unexpected UTF-8 BOM'."""
    path = save_preset(RegistrationParameters(iterations=42), tmp_path / "edited.json", "edited in Notepad")
    path.write_bytes(codecs.BOM_UTF8 + path.read_bytes())
    assert load_preset(str(path)).iterations == 42
    assert preset_description("edited", [tmp_path]) == "edited in Notepad"


def test_a_saved_preset_and_a_report_give_back_the_same_parameters(tmp_path):
    chosen = RegistrationParameters(iterations=77, similarity="lncc", folding_weight=3.0)
    assert load_preset(str(save_preset(chosen, tmp_path / "mine.json", "mine"))) == chosen
    assert load_preset("mine", [tmp_path]) == chosen
    (tmp_path / "report.json").write_text(json.dumps({"seconds": 1.0, "parameters": chosen.as_dict()}))
    assert load_preset(str(tmp_path / "report.json")) == chosen


@pytest.mark.parametrize("content, message", [({"parameters": {"iterationz": 5}}, "unknown parameter 'iterationz'"),
                                              ({"parameters": {"levels": 9}}, "levels must be between 1 and 6"),
                                              ({"parameters": {"levels": "two"}}, "levels must be a number"),
                                              ({"parameters": {"iterations": 100.5}}, "a whole number, not 100.5"),
                                              ({"parameters": {"iterations": True}}, "must be a number, not true"),
                                              ({"values": {}}, "needs a 'parameters' mapping"),
                                              ({"parameters": [1]}, "needs a 'parameters' mapping"),
                                              ([1, 2], "needs a 'parameters' mapping")])
def test_a_bad_preset_file_is_refused_naming_it(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message) as error:
        load_preset(str(path))
    assert str(path) in str(error.value)


def test_every_parameter_has_a_checked_range_or_choices_and_a_help_text():
    for name, spec in specs().items():
        assert spec.help and spec.label
        assert spec.choices or (spec.minimum is not None and spec.maximum is not None), name
        assert (spec.paper in spec.choices) if spec.choices else spec.minimum <= spec.paper <= spec.maximum, name
        if not spec.choices:
            with pytest.raises(ValueError, match="must be between"):
                RegistrationParameters(**{name: type(defaults()[name])(spec.maximum * 2 + 1)})


@pytest.mark.parametrize("change", [{"iterations": 0}, {"levels": 9}, {"similarity": "ncc"}, {"mode": "4d"},
                                    {"net_downsampling": 0}, {"kernel_size_2d": 4}, {"working_spacing_mm": -1.0},
                                    {"learning_rate": 2.0}, {"folding_weight": -1.0},
                                    {"iterations_3d": 0}, {"inverse_refinement_steps": -1}, {"region": "box"},
                                    {"region_margin_mm": -1.0}, {"smoothing_sigma_mm": -0.5}, {"lncc_window": 8}])
def test_invalid_parameters_are_refused(change):
    with pytest.raises(ValueError):
        RegistrationParameters(**change)


def test_a_range_of_whole_numbers_is_said_in_full():
    with pytest.raises(ValueError, match="seed must be between 0 and 2147483647, not -1$"):
        RegistrationParameters(seed=-1)


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


def test_labels_the_map_leaves_where_they_were_are_flagged_even_when_the_similarity_improved(small_2d_pair):
    """A basal ACDC slice registered on the whole image improved its similarity by 7 % while moving the heart by
    0.07 mm: its labels came back exactly unregistered, and nothing warned (docs/benchmarks.md, stack slices)."""
    from ODERegistrationLib.engine import register_images

    flagged = "propagated essentially unregistered"
    still = RegistrationParameters(learning_rate=1e-7, iterations=30, region="whole")
    report = register_images(small_2d_pair["fixed"], small_2d_pair["moving"], still,
                             moving_labels=small_2d_pair["moving_labels"]).report
    assert any(flagged in warning and "--roi auto" in warning for warning in report["warnings"])
    in_region = register_images(small_2d_pair["fixed"], small_2d_pair["moving"], still.replace(region="auto"),
                                moving_labels=small_2d_pair["moving_labels"]).report
    assert any(flagged in warning and "--roi" not in warning for warning in in_region["warnings"])  # it had that
    registered = register_images(small_2d_pair["fixed"], small_2d_pair["moving"], RegistrationParameters(iterations=30),
                                 moving_labels=small_2d_pair["moving_labels"]).report
    assert not any(flagged in warning for warning in registered["warnings"])


def test_a_report_without_a_parameter_is_refused_for_an_exact_rerun_and_taken_as_a_preset(tmp_path):
    """A report written before a parameter existed ran without it; `--parameters` promises that run exactly, so
    it must not fill the gap with today's default (warm-up 30) without a word."""
    values = RegistrationParameters(iterations=77).as_dict()
    del values["warmup_iterations"]
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"parameters": values}))
    with pytest.raises(ValueError, match="has no value for warmup_iterations"):
        parameters_from_arguments(build_parser().parse_args(["demo", "--parameters", str(report)]))
    as_preset = parameters_from_arguments(build_parser().parse_args(["demo", "--preset", str(report)]))
    assert as_preset.iterations == 77 and as_preset.warmup_iterations == RegistrationParameters().warmup_iterations


def test_command_line_preset_with_overrides():
    arguments = build_parser().parse_args(["demo", "--preset", "paper", "--iterations", "5", "--seed", "2"])
    parameters = parameters_from_arguments(arguments)
    assert parameters == load_preset("paper").replace(iterations=5, seed=2)
    assert parameters_from_arguments(build_parser().parse_args(["demo"])) == RegistrationParameters()


def test_every_parameter_is_a_command_line_option_with_its_default_and_paper_value_in_the_help(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["register", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, spec in specs().items():
        flag = spec.flag or "--" + name.replace("_", "-")
        default, paper = defaults()[name], spec.paper
        shown = (f"(default: {default}; paper: {paper})" if spec.choices else
                 f"(default: {default:g}; paper: {paper:g})")
        assert f"{flag} " in text and shown in text, name


def test_version_and_a_rejected_value_is_one_line(capsys):
    from ODERegistrationLib.engine import __version__

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--version"])
    assert capsys.readouterr().out.strip() == f"oderegistration {__version__}"
    from ODERegistrationLib.cli.main import main

    with pytest.raises(SystemExit) as exit:
        main(["register", "--fixed", "f", "--moving", "m", "--output-dir", "o", "--levels", "9"])
    error = capsys.readouterr().err
    assert exit.value.code == 2 and error.count("\n") == 1
    assert error.startswith("oderegistration register: error: levels must be between 1 and 6, not 9")


def test_parameters_of_an_earlier_run_that_are_not_a_file_are_named_as_such(capsys, tmp_path):
    """--parameters takes a report.json: a missing one was reported as 'no such preset'."""
    from ODERegistrationLib.cli.main import main

    missing = str(tmp_path / "report.json")
    with pytest.raises(SystemExit) as exit:
        main(["register", "--fixed", "f", "--moving", "m", "--output-dir", "o", "--parameters", missing])
    assert exit.value.code == 2 and f"--parameters {missing}: no such file" in capsys.readouterr().err


def test_the_docs_parameter_table_is_the_one_generated_from_the_dataclass():
    from ODERegistrationLib.engine.parameters import markdown_table

    from conftest import REPOSITORY

    assert (REPOSITORY / "docs" / "parameters.md").read_text() == markdown_table()


def test_the_sequence_command_starts_from_the_sequence_preset(capsys):
    """A cine is hundreds of slice problems in one batch: its command starts from its own preset (and says so in
    its help), while register keeps the fast one."""
    sequence = ["sequence", "--cine", "c.nii.gz", "--labels", "l.nii.gz", "--reference-phase", "0", "--output-dir", "o"]
    assert parameters_from_arguments(build_parser().parse_args(sequence)) == load_preset("sequence")
    assert parameters_from_arguments(build_parser().parse_args(sequence + ["--preset", "fast"])) == load_preset("fast")
    assert parameters_from_arguments(build_parser().parse_args(["demo"])) == load_preset("fast")
    assert load_preset("sequence") != load_preset("fast")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sequence", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {load_preset('sequence').iterations};" in help_text


def test_options_in_a_message_are_named_as_the_panel_names_them():
    """Every parameter's option becomes its panel label, with its value when the next word is one; a word that is
    not a value, a full stop and an option that is no parameter stay as they were."""
    from ODERegistrationLib.engine.core.device import out_of_memory_message
    from ODERegistrationLib.engine.parameters import in_panel_words, option_flag

    for name, spec in specs().items():
        assert in_panel_words(f"({option_flag(name)})") == f"({spec.label})"
    assert in_panel_words("fit the region around the labels (--roi auto)") == \
        "fit the region around the labels (Region = auto)"
    assert in_panel_words("raise it (--learning-rate 0.002).") == "raise it (Learning rate = 0.002)."
    assert in_panel_words("--through-plane-sigma-mm adds a map") == "Through-plane smoothing (mm) adds a map"
    assert in_panel_words("--time-axis is for a 3-D cine") == "--time-axis is for a 3-D cine"
    assert "--" not in in_panel_words(out_of_memory_message(torch.device("cuda"), (64, 64, 64)))
