"""Reading a fine-tuning sweep (:func:`~codecloss.tasks.sr_finetune.run_finetune`): matched operating points and
the perception-distortion plot (Blau & Michaeli, "The Perception-Distortion Tradeoff", CVPR 2018).

Losses are compared at a matched distortion: for each loss, the weight whose BSD100 PSNR-Y is closest to the
continued-L1 control's minus ``drop_db`` (0.5 dB), among the weights no more than ``tolerance_db`` below that
target. The sweep's weights are picked as they are, not interpolated.

Example:
    >>> matched = matched_operating_points(json.load(open("runs/sr/sweep.json")))  # doctest: +SKIP
    >>> plot_perception_distortion(result, "docs/images/sr_pd.png")  # doctest: +SKIP

Sweeps run separately from one pretrained network (more losses or weights later) are read together with
:func:`merge_sweeps`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["matched_operating_points", "merge_sweeps", "plot_perception_distortion"]


def merge_sweeps(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Several sweeps' runs and scores as one result; a label present in an earlier sweep is kept from it.

    Only sweeps from the same pretrained network and training settings can be read together: their ``l1`` and
    ``pretrained`` rows must agree, so the first sweep's stand for all.

    Args:
        results: sweep results (``run_finetune``'s JSON), in order of precedence.

    Returns:
        ``{"runs", "eval", "sources"}``; ``sources[label]`` is the index of the sweep a run came from.

    Raises:
        ValueError: no results, or sweeps whose ``settings`` differ in ``init``, ``steps``, ``batch``,
            ``patch``, ``lr`` or ``seed``.
    """
    if not results:
        raise ValueError("results: expected at least one sweep, got none")
    keys = ("init", "steps", "batch", "patch", "lr", "seed")
    first = {k: results[0].get("settings", {}).get(k) for k in keys}
    merged: dict[str, Any] = {"runs": {}, "eval": {}, "sources": {}}
    for index, result in enumerate(results):
        fixed = {k: result.get("settings", {}).get(k) for k in keys}
        if fixed != first:
            raise ValueError(f"results[{index}]: settings {fixed} differ from the first sweep's {first}")
        for label, run in result["runs"].items():
            if label not in merged["runs"]:
                merged["runs"][label], merged["sources"][label] = run, index
        for dataset, methods in result["eval"].items():
            target = merged["eval"].setdefault(dataset, {})
            for label, scores in methods.items():
                target.setdefault(label, scores)
    return merged


def _loss_runs(result: dict[str, Any]) -> dict[str, list[str]]:
    """Loss name -> its run labels, in ratio order (the ``l1`` control left out)."""
    runs: dict[str, list[str]] = {}
    for label, info in result["runs"].items():
        if info["loss"] != "l1":
            runs.setdefault(info["loss"], []).append(label)
    return {k: sorted(v, key=lambda lab: result["runs"][lab]["weight_ratio"] or 0.0) for k, v in runs.items()}


def matched_operating_points(result: dict[str, Any], dataset: str = "bsd100", drop_db: float = 0.5,
                             tolerance_db: float = 0.1) -> dict[str, Any]:
    """Each loss's run at the matched distortion (continued L1's PSNR-Y on ``dataset`` minus ``drop_db``).

    Args:
        result: a sweep result with ``runs`` and ``eval``.
        dataset: the eval set that fixes the operating point.
        drop_db: how far below the ``l1`` control's PSNR-Y the target lies.
        tolerance_db: how far from the target (either side) a run may be and still be picked.

    Returns:
        ``{"rule", "dataset", "target_psnr_y", "losses"}``; ``losses[name]`` is ``{"label", "weight_ratio",
        "psnr_y", "scores"}`` (``scores``: the run's mean scores on every eval set), or ``{"label": None,
        "reason"}`` when no weight lands within the tolerance (the reason says whether every run stays above the
        target, i.e. the loss never reaches it at these weights, or falls below it); a ``"skipped"`` reason
        instead when ``dataset`` or the ``l1`` run is missing.
    """
    rule = (f"per loss, the weight whose {dataset} PSNR-Y is closest to (continued L1 - {drop_db} dB) among those "
            f"within {tolerance_db} dB of it; picked, not interpolated")
    scores = result["eval"].get(dataset, {})
    reference = scores.get("l1", {}).get("psnr_y")
    if reference is None:
        return {"rule": rule, "dataset": dataset, "skipped": f"no l1 run scored on {dataset!r}"}
    target = reference - drop_db
    losses: dict[str, Any] = {}
    for loss, labels in _loss_runs(result).items():
        scored = {lab: scores[lab]["psnr_y"] for lab in labels if scores.get(lab, {}).get("psnr_y") is not None}
        eligible = [lab for lab, psnr in scored.items() if abs(psnr - target) <= tolerance_db]
        if not eligible:
            losses[loss] = {"label": None, "reason": _unmatched_reason(list(scored.values()), target, tolerance_db)}
            continue
        best = min(eligible, key=lambda lab: abs(scored[lab] - target))
        losses[loss] = {"label": best, "weight_ratio": result["runs"][best]["weight_ratio"],
                        "psnr_y": scored[best],
                        "scores": {d: {k: v for k, v in methods[best].items() if k != "per_image"}
                                   for d, methods in result["eval"].items() if best in methods}}
    return {"rule": rule, "dataset": dataset, "target_psnr_y": target, "losses": losses}


def _unmatched_reason(psnrs: list[float], target: float, tolerance_db: float) -> str:
    if not psnrs:
        return "no run scored"
    if min(psnrs) > target + tolerance_db:
        return (f"unreachable: every weight stays above the target (lowest PSNR-Y {min(psnrs):.3f} dB, "
                f"{min(psnrs) - target:.3f} dB above); a larger weight may reach it")
    if max(psnrs) < target - tolerance_db:
        return f"every weight is more than {tolerance_db} dB below the target"
    return f"no weight within {tolerance_db} dB of the target: the weights step over it"


def plot_perception_distortion(result: dict[str, Any], path: str | os.PathLike[str], perception: str = "lpips_alex",
                               distortion: str = "psnr_y") -> Path:
    """PSNR-Y (x) against LPIPS-Alex (y), one curve per loss through its weights, one panel per eval set.

    The ``l1`` control and the pretrained network are single markers (bicubic's scores are in each panel's
    title: plotted, they would squash the trained networks' corner); matched operating points
    (``result["matched"]``) are circled.

    Args:
        result: a sweep result.
        path: the image file to write (PNG, PDF, ...).
        perception: the y-axis metric (lower is better).
        distortion: the x-axis metric (higher is better).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: no ``perception`` score in ``result`` (e.g. the judge was skipped).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from codecloss.evaluate.report import save_figure

    datasets = list(result["eval"])
    if not any(m.get(perception) is not None for d in datasets for m in result["eval"][d].values()):
        reason = result.get("judges_skipped", {}).get(perception, "no such score")
        raise ValueError(f"result: no {perception!r} scores to plot ({reason})")
    matched = {v["label"] for v in result.get("matched", {}).get("losses", {}).values() if v.get("label")}
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        scores = result["eval"][dataset]

        def point(label: str) -> tuple[float, float] | None:
            values = scores.get(label, {})
            x, y = values.get(distortion), values.get(perception)
            return None if x is None or y is None else (x, y)

        for label, style in (("l1", "k*"), ("pretrained", "kx")):
            if (xy := point(label)) is not None:
                ax.plot(*xy, style, label=label, markersize=9 if label == "l1" else 6)
        for loss, labels in _loss_runs(result).items():
            points = [(lab, xy) for lab in labels if (xy := point(lab)) is not None]
            if not points:
                continue
            (line,) = ax.plot([xy[0] for _, xy in points], [xy[1] for _, xy in points], ".-", label=loss)
            for lab, xy in points:
                if lab in matched:
                    ax.plot(*xy, "o", markersize=12, markerfacecolor="none", color=line.get_color())
        bicubic = point("bicubic")  # far off the trained networks' scale: named in the title, not plotted
        ax.set_title(dataset if bicubic is None else f"{dataset} (bicubic: {bicubic[0]:.2f}, {bicubic[1]:.3f})")
        ax.set_xlabel(f"{distortion} (higher is better)")
        ax.set_ylabel(f"{perception} (lower is better)")
        ax.grid(alpha=0.3)
    legend = {label: handle for ax in axes[0] for handle, label in zip(*ax.get_legend_handles_labels())}
    axes[0][-1].legend(list(legend.values()), list(legend), fontsize=7, loc="best")  # every panel's curves
    return save_figure(fig, path)
