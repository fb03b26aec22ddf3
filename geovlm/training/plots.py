"""The loss curve of a training run: raw per logging step, and smoothed, as a PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["plot_loss", "smoothed"]


def smoothed(values: Sequence[float], weight: float | None = None) -> list[float]:
    """An exponential moving average, debiased, as TensorBoard and LLaMA-Factory draw it.

    Parameters
    ----------
    values
        The raw series.
    weight
        How much of the previous average is kept per point; by default more for longer series
        (0 up to 0.9), so a short run is not flattened.

    Returns
    -------
    list of float

    Examples
    --------
    >>> smoothed([1.0, 1.0, 1.0], weight=0.5)
    [1.0, 1.0, 1.0]
    """
    if weight is None:
        weight = min(0.9, max(0.0, 1.0 - 10.0 / max(len(values), 1)))
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**i))
    return out


def plot_loss(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Draw training loss against step (raw and smoothed) into ``path`` (PNG, Agg backend).

    Parameters
    ----------
    rows
        `geovlm.training.outputs.read_log` rows with ``step`` and ``loss``.
    path
        The image to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    steps = [row["step"] for row in rows]
    losses = [row["loss"] for row in rows]
    figure = Figure(figsize=(6.4, 4.0), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.plot(steps, losses, color="#1f77b4", alpha=0.4, label="loss")
    axes.plot(steps, smoothed(losses), color="#1f77b4", label="smoothed")
    axes.set(xlabel="step", ylabel="training loss", title=f"training loss of {path.parent.name}")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(path)
