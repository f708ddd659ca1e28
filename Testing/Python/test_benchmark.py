"""The benchmark on one real pair: the CSV has its columns, every method runs on the whole image and in the
region, the engine beats unregistered, missing peers are reported."""
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from benchmarks import cine_benchmark, methods, run_benchmark
from benchmarks.dataset import load_pairs
from benchmarks.evaluate import evaluate
from benchmarks.run_benchmark import main

COLUMNS = {"pair", "method", "label", "label_name", "dice_before", "dice_after", "hausdorff_mm_before",
           "hausdorff_mm_after", "hausdorff95_mm_before", "hausdorff95_mm_after", "folded_voxels", "folded_fraction",
           "min_jacobian", "inverse_folded_voxels", "inverse_consistency_mm", "seconds", "peak_rss_mb", "failure"}


FILE_KEYS = ("fixed", "moving", "fixed_labels", "moving_labels")


def test_benchmark_on_one_real_pair(data_dir, tmp_path, monkeypatch, capsys):
    not_installed = methods.Method("elastix", "no_such_package_here", methods.elastix())
    monkeypatch.setitem(methods.METHODS, "elastix", not_installed)
    output = tmp_path / "bench"
    assert main(["--data", str(data_dir / "sunnybrook"), "--dim", "2", "--pairs", "1", "--output-dir", str(output),
                 "--methods", "ode", "demons", "elastix", "--iterations", "150"]) == 0
    rows = list(csv.DictReader((output / "results.csv").open()))
    assert COLUMNS == set(rows[0])
    assert {row["method"] for row in rows} == {"ode", "demons", "ode+roi", "demons+roi"}
    for name in ("ode", "ode+roi"):
        ode = next(row for row in rows if row["method"] == name)
        assert float(ode["dice_after"]) > float(ode["dice_before"])
        assert int(ode["folded_voxels"]) == 0 and int(ode["inverse_folded_voxels"]) == 0
        assert float(ode["inverse_consistency_mm"]) < 1.0
    summary = (output / "summary.md").read_text()
    assert "no_such_package_here" in summary and "| ode |" in summary and "| demons+roi |" in summary
    assert (output / "reliability.png").read_bytes()[:4] == b"\x89PNG"


def test_pair_ids_pick_pairs_by_id_and_a_text_that_matches_none_is_refused(data_dir, tmp_path, capsys):
    """Finishing two stacks of a run of five needed a scratch manifest, as --pairs takes the first N; and a typing
    error in an id must not run fewer pairs unnoticed."""
    pairs = load_pairs(data_dir / "acdc", 3, ids=["patient086", "patient067"])
    assert [pair.id for pair in pairs] == ["acdc_patient067_3d", "acdc_patient086_3d"]
    output = tmp_path / "bench"
    assert main(["--data", str(data_dir / "acdc"), "--dim", "3", "--pair-ids", "patient067", "patient99",
                 "--output-dir", str(output)]) == 2
    assert "no pair's id contains 'patient99' with these options" in capsys.readouterr().err
    assert not output.exists()


def evaluate_or_fail(pair, method, options):
    """demons raising on the whole image and its worker dying in the region; the other methods as they are."""
    if method != "demons":
        return evaluate(pair, method, options)
    if options["region"] == "auto":
        os._exit(3)
    raise RuntimeError("too many samples map outside moving image buffer\n(a second line, left out)")


def test_a_method_that_fails_on_a_pair_leaves_it_unregistered_and_the_run_goes_on(data_dir, tmp_path, monkeypatch):
    """A run that raised, or whose worker died, ended the whole benchmark with a traceback and no results (on a
    held-out set, hours of runs lost to one pair); it now scores that pair unregistered for that method and says
    why, in results.csv and summary.md."""
    monkeypatch.setattr(run_benchmark, "evaluate", evaluate_or_fail)
    output = tmp_path / "bench"
    assert main(["--data", str(data_dir / "sunnybrook"), "--dim", "2", "--pairs", "1", "--output-dir", str(output),
                 "--methods", "demons", "ode", "--iterations", "20"]) == 0
    rows = {row["method"]: row for row in csv.DictReader((output / "results.csv").open())}
    assert rows["demons"]["failure"] == "RuntimeError: too many samples map outside moving image buffer"
    assert rows["demons+roi"]["failure"].startswith("BrokenProcessPool")
    for name in ("demons", "demons+roi"):
        assert rows[name]["dice_after"] == rows[name]["dice_before"] and rows[name]["seconds"] == "nan"
    for name in ("ode", "ode+roi"):  # each run after a failed one
        assert rows[name]["failure"] == "" and float(rows[name]["seconds"]) > 0
    summary = (output / "summary.md").read_text()
    assert "Failed runs, scored as unregistered (2): demons on scd_SCD0000101_sl02_2d (RuntimeError: too many " \
           "samples map outside moving image buffer); demons+roi on scd_SCD0000101_sl02_2d (BrokenProcessPool" in summary
    demons_row = next(line for line in summary.splitlines() if line.startswith("| demons |"))
    assert demons_row.endswith("| 1 | – | – |")  # at the identity, no time


def test_the_chained_strategy_walks_neighbour_pairs_from_the_reference_the_shorter_way():
    """Each phase's chain starts at the reference and steps through neighbours to the phase: forward maps of the
    pairs t -> t+1 when the phase is ahead in the cycle, backward maps when it is behind; one pair is never used."""
    from benchmarks.cine_benchmark import _path

    count, reference = 20, 18
    assert _path(reference, reference, count) == []
    for phase in range(count):
        path = _path(reference, phase, count)
        assert len(path) == min((phase - reference) % count, (reference - phase) % count)
        position = reference
        for start, direction in path:
            assert start == (position if direction == 0 else (position - 1) % count)
            position = (position + 1) % count if direction == 0 else (position - 1) % count
        assert position == phase
    assert len({start for phase in range(count) for start, _ in _path(reference, phase, count)}) == count - 1


def test_stack_slices_are_the_slices_of_a_stack_that_hold_every_label_as_2d_pairs(data_dir):
    """``--stack-slices``: a wider 2-D set than the mid-ventricular pairs, base to apex."""
    stack = next(pair for pair in load_pairs(data_dir / "acdc", 3) if pair.id == "acdc_patient004_3d")
    pairs = [pair for pair in load_pairs(data_dir / "acdc", stack_slices=True) if pair.id.startswith(stack.id)]
    volumes = {key: sitk.GetArrayFromImage(stack.image(key)) for key in stack.files}
    assert 0 < len(pairs) < len(volumes["fixed"])  # slices without every label (past the apex) are left out
    for pair in pairs:
        assert pair.dim == 2
        for key, volume in volumes.items():
            array = sitk.GetArrayFromImage(pair.image(key))
            assert np.array_equal(array, volume[pair.stack_slice])
            if key.endswith("labels"):
                assert all(np.any(array == label) for label in pair.eval_labels)


def test_reverse_swaps_the_phases_with_their_labels_and_labelled_slices(data_dir, tmp_path):
    """``--reverse``: the ES labels carried onto the ED image. Each image must travel with its own labels, and a
    stack labelled on some slices is scored on the slices labelled in its new fixed (ED) image."""
    forward = {pair.id: pair for pair in load_pairs(data_dir / "sunnybrook")}
    reversed_pairs = load_pairs(data_dir / "sunnybrook", reverse=True)
    assert len(reversed_pairs) == len(forward)
    for pair in reversed_pairs:
        original = forward[pair.id.removesuffix("_reversed")]
        assert pair.id.endswith("_reversed")
        assert (pair.files["fixed"], pair.files["fixed_labels"]) == (original.files["moving"],
                                                                     original.files["moving_labels"])
        assert (pair.files["moving"], pair.files["moving_labels"]) == (original.files["fixed"],
                                                                       original.files["fixed_labels"])
    stack = next(pair for pair in reversed_pairs if pair.dim == 3)
    labelled = np.flatnonzero(sitk.GetArrayFromImage(stack.image("fixed_labels")).any(axis=(1, 2)))
    assert stack.labelled_slices_fixed == labelled.tolist()
    # the development stack has the same labelled slices in both phases: a manifest where they differ tells them apart
    manifest = json.loads((data_dir / "sunnybrook" / "manifest.json").read_text())
    entry = next(entry for entry in manifest["pairs"] if entry["dim"] == 3)
    files = {key: str(data_dir / "sunnybrook" / entry[key]) for key in FILE_KEYS}
    manifest["pairs"] = [{**entry, **files, "labelled_slices_fixed": [1, 2], "labelled_slices_moving": [3, 4]}]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert load_pairs(tmp_path, reverse=True)[0].labelled_slices_fixed == [3, 4]
    assert load_pairs(tmp_path)[0].labelled_slices_fixed == [1, 2]


def test_whole_fov_spacing_gives_a_2d_pair_another_pixel_size_over_the_same_field_of_view(data_dir):
    """``--whole-fov-spacing`` on 2-D pairs: how the defaults fare at another scanner's pixel size. The field of view
    and each label's area stay; only the sampling changes."""
    original = load_pairs(data_dir / "acdc", 2)[0]
    pair = load_pairs(data_dir / "acdc", 2, isotropic_spacing=0.78125)[0]
    assert pair.dim == 2 and pair.id == original.id + "_fov0.78125mm"
    for key in original.files:
        source, image = original.image(key), pair.image(key)
        assert image.GetSpacing() == (0.78125, 0.78125)
        assert list(image.GetSize()) == [2 * n for n in source.GetSize()]
        assert np.allclose(image.TransformContinuousIndexToPhysicalPoint([-0.5, -0.5]),
                           source.TransformContinuousIndexToPhysicalPoint([-0.5, -0.5]))
        if key.endswith("labels"):
            for label in pair.eval_labels:
                areas = [np.count_nonzero(sitk.GetArrayViewFromImage(i) == label) * np.prod(i.GetSpacing())
                         for i in (source, image)]
                assert abs(areas[1] - areas[0]) < 0.05 * areas[0]


def test_the_cine_sweep_scores_a_stack_as_a_two_phase_cine_from_the_sequence_preset(data_dir):
    """Each setting is the `sequence` preset plus its options; a pair's EF is its LV cavity's (ACDC numbers the
    cavity 3: label 1, the RV, gives another EF), on the slices the expert drew at both phases."""
    from benchmarks.cine_sweep import parameters_of, run_case
    from ODERegistrationLib.engine.presets import load_preset

    assert parameters_of("") == load_preset("sequence")
    assert parameters_of("--iterations 2 --seed 3") == load_preset("sequence").replace(iterations=2, seed=3)
    pair = next(pair for pair in load_pairs(data_dir / "acdc", 3) if pair.id == "acdc_patient004_3d")
    row = run_case(pair, parameters_of("--iterations 2"))
    ed, es = (sitk.GetArrayFromImage(pair.image(key)) == 3 for key in ("moving_labels", "fixed_labels"))
    assert row["expert_ef"] == 100.0 * (ed.sum() - es.sum()) / ed.sum()
    assert 0.0 < row["dice"] < 1.0 and row["folds"] == 0 and row["id"] == pair.id


def test_a_data_folder_the_benchmark_cannot_run_on_is_one_line_before_any_run(data_dir, tmp_path, capsys):
    """The benchmark is how a dataset of other patients is scored: a wrong folder ended in a FileNotFoundError
    traceback, a manifest naming a missing file in every method's run failing one after the other, and --pairs 0
    ran every pair."""
    def refused(folder, *options):
        code = main(["--data", str(folder), "--output-dir", str(tmp_path / "out"), *options])
        return code, capsys.readouterr().err.strip()

    code, message = refused(data_dir)
    assert code == 2 and message == (f"benchmark: --data {data_dir}: holds no manifest.json; give the folder of one "
                                     "dataset, such as ../shared/data/acdc")
    manifest = json.loads((data_dir / "acdc" / "manifest.json").read_text())
    entry = {**manifest["pairs"][0], **{key: str(data_dir / "acdc" / manifest["pairs"][0][key]) for key in FILE_KEYS}}
    for broken, expected in (({**entry, "moving": "elsewhere/ED.nii.gz"}, "lists elsewhere/ED.nii.gz, which is not in"),
                             ({key: value for key, value in entry.items() if key != "eval_labels"},
                              "pair 0 lacks or garbles 'eval_labels'")):
        (tmp_path / "manifest.json").write_text(json.dumps({"pairs": [broken]}))
        code, message = refused(tmp_path)
        assert code == 2 and expected in message and message.count("\n") == 0
    (tmp_path / "manifest.json").write_text(json.dumps({"pairs": [entry]}))
    code, message = refused(tmp_path, "--dim", "3")
    assert code == 2 and "no pair to run with these options" in message
    with pytest.raises(SystemExit) as stop:
        main(["--data", str(tmp_path), "--output-dir", str(tmp_path / "out"), "--pairs", "0"])
    assert stop.value.code == 2 and "'0' is not a whole number of at least 1" in capsys.readouterr().err
    assert cine_benchmark.main(["--data", str(data_dir / "acdc"), "--output-dir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip().endswith("acdc/manifest.json: has no list of 'sequences'")
    assert not (tmp_path / "out").exists()


def test_the_peers_other_settings_run_in_the_benchmarks_own_worker_processes(data_dir, tmp_path):
    """Each run is a spawned process that looks its method up by name: the variants must be known there too, and
    each must run with its own setting (demons with σ = 1 and σ = 3 give other fields)."""
    output = tmp_path / "peers"
    subprocess.run([sys.executable, "-m", "benchmarks.peer_settings", "--data", str(data_dir / "sunnybrook"), "--dim",
                    "2", "--pairs", "1", "--roi", "auto", "--methods", "demons_sigma1", "demons_sigma3",
                    "--output-dir", str(output)], cwd=Path(__file__).parents[2], check=True, capture_output=True)
    rows = {row["method"]: row for row in csv.DictReader((output / "results.csv").open())}
    assert set(rows) == {"demons_sigma1+roi", "demons_sigma3+roi"}
    assert not any(row["failure"] for row in rows.values())
    assert rows["demons_sigma1+roi"]["dice_after"] != rows["demons_sigma3+roi"]["dice_after"]


def test_the_cine_tools_take_every_peer_of_the_pair_benchmark():
    """They listed their peers by hand, so `syncc`, the best 2-D peer once it joined, could not be run on a cine."""
    from benchmarks import cine_sweep
    from benchmarks.dataset import DatasetError

    peers = [name for name in methods.METHODS if name != "ode"]
    assert "syncc" in peers and methods.PEERS == peers
    parsed = cine_benchmark.build_parser().parse_args(["--data", "-", "--output-dir", "-", "--methods", *peers])
    assert parsed.methods == peers
    with pytest.raises(DatasetError):  # the options parsed; the folder then holds no data
        cine_sweep.main(["--data", "/nonexistent", "", "--peers", *peers])
