"""results.csv -> summary.md (the paper's Table-1 layout, with time ratios to ANTs SyN) and reliability.png."""
from __future__ import annotations

import csv
import math
import statistics
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

RELIABILITY_THRESHOLDS = [round(0.5 + 0.005 * step, 3) for step in range(101)]


def write_csv(rows: List[Dict], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _mean_sd(values: List[float]) -> str:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {sd:.3f}"


def summary_markdown(rows: List[Dict], methods: List[str], missing: List[str], title: str) -> str:
    labels = sorted({(row["label"], row["label_name"]) for row in rows})
    by_method = defaultdict(list)
    for row in rows:
        by_method[row["method"]].append(row)
    lines = [f"## {title}", "", f"Pairs: {len({row['pair'] for row in rows})}.", ""]
    header = ("| method | " + " | ".join(f"Dice {name}" for _, name in labels) + " | mean Dice | HD95 mm (mean) "
              "| folded voxels (mean %) | inverse folded voxels (total) | pairs at identity | median time s "
              "| time / SyN |")
    lines += [header, "|" + "---|" * (header.count("|") - 1)]
    first = methods[0] if methods else None
    lines.append("| unregistered | " + " | ".join(
        _mean_sd([r["dice_before"] for r in by_method[first] if r["label"] == label]) for label, _ in labels)
        + f" | {_mean([r['dice_before'] for r in by_method[first]])}"
        + " | " + _mean_sd([r["hausdorff95_mm_before"] for r in by_method[first]]) + " | – | – | – | – | – |")
    syn_times = _per_pair(by_method.get("syn", []), "seconds")
    for method in methods:
        method_rows = by_method.get(method, [])
        if not method_rows:
            continue
        times = _per_pair(method_rows, "seconds")
        ratios = [times[pair] / syn_times[pair] for pair in times if pair in syn_times and syn_times[pair] > 0]
        ratio = f"{statistics.median(ratios):.2f}" if ratios else "–"
        folds = [100 * v for v in _per_pair(method_rows, "folded_fraction").values()]
        inverse_folds = [v for v in _per_pair(method_rows, "inverse_folded_voxels").values() if not math.isnan(v)]
        inverse_cell = f"{sum(inverse_folds):.0f}" if inverse_folds else "–"
        at_identity = {row["pair"] for row in method_rows} - {
            row["pair"] for row in method_rows if float(row["dice_after"]) != float(row["dice_before"])}
        lines.append(f"| {method} | " + " | ".join(
            _mean_sd([r["dice_after"] for r in method_rows if r["label"] == label]) for label, _ in labels)
            + f" | {_mean([r['dice_after'] for r in method_rows])}"
            + f" | {_mean_sd([r['hausdorff95_mm_after'] for r in method_rows])}"
            + f" | {statistics.mean(folds):.4f} | {inverse_cell} | {len(at_identity)}"
            + f" | {f'{statistics.median(times.values()):.2f}' if times else '–'} | {ratio} |")
    ic = {method: _mean_sd(list(_per_pair(by_method[method], "inverse_consistency_mm").values()))
          for method in methods if by_method.get(method)}
    memory = {method: max(peaks.values()) for method in methods
              if (peaks := _per_pair(by_method.get(method, []), "peak_rss_mb"))}
    lines += ["", "Inverse consistency, mean round trip |x - D_B(D_F(x))| in mm (methods with an inverse): "
              + ", ".join(f"{m} {v}" for m, v in ic.items() if v != "–") + ".",
              "Peak resident memory of the worker process (MB, includes the Python libraries): "
              + ", ".join(f"{m} {v:.0f}" for m, v in memory.items()) + "."]
    failures = sorted({(row["method"], row["pair"], row["failure"]) for row in rows if row.get("failure")})
    if failures:
        lines += ["", f"Failed runs, scored as unregistered ({len(failures)}): "
                  + "; ".join(f"{method} on {pair} ({reason})" for method, pair, reason in failures) + "."]
    if missing:
        lines += ["", "Not run: " + "; ".join(missing) + "."]
    return "\n".join(lines) + "\n"


def _mean(values: List[float]) -> str:
    """Mean over every (pair, label) case: the figure the issues compare methods by."""
    return f"{statistics.mean(float(v) for v in values):.3f}"


def _per_pair(rows: List[Dict], key: str) -> Dict[str, float]:
    """One value per pair, left out where it is NaN (a failed run has no time)."""
    values = {row["pair"]: float(row[key]) for row in rows}
    return {pair: value for pair, value in values.items() if not math.isnan(value)}


def reliability_plot(rows: List[Dict], methods: List[str], path: Path, title: str) -> None:
    """R(d): fraction of (pair, label) cases whose Dice after registration exceeds d, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    cases = [("unregistered", [r["dice_before"] for r in rows if r["method"] == methods[0]])]
    cases += [(m, [r["dice_after"] for r in rows if r["method"] == m]) for m in methods]
    for name, dices in cases:
        if dices:
            axis.plot(RELIABILITY_THRESHOLDS, [sum(d > t for d in dices) / len(dices) for t in RELIABILITY_THRESHOLDS],
                      label=name, linestyle="--" if name == "unregistered" else "-")
    axis.set_xlabel("Dice threshold d")
    axis.set_ylabel("R(d) = fraction of cases with Dice > d")
    axis.set_title(textwrap.fill(title, 70), fontsize=8)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
