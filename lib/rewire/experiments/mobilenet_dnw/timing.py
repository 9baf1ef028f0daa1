"""Inference of a trained MobileNetV1-DNW, masked against compact (dead nodes dropped): is the speed-up real?

:func:`rewire.methods.dnw_profile.compact` physically drops the dead nodes' channels (their depthwise
convolutions, norms and adjacency columns); its outputs equal the masked model's. :func:`compact_timing`
measures both on the same test batches, alternately in the same process (so a busy machine slows both
alike), and reports the medians. Not part of any run's identity: it reads a trained model.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn as nn

__all__ = ["TIMING_BATCH_SIZE", "compact_timing"]

# test images per timed batch (our choice: large enough that per-call overhead is small on a CPU)
TIMING_BATCH_SIZE = 250


def compact_timing(model: nn.Module, data, *, device: torch.device, batches: int, batch_size: int = TIMING_BATCH_SIZE):
    """Images/s of ``model`` (a trained MobileNetV1-DNW) and of its compact form on ``batches`` test batches.

    Returns ``(table, difference)``: a DataFrame with one row per model (median images/s, ratio to the masked
    model, live and all nodes, the largest output difference, batches) and that largest absolute difference."""
    import pandas as pd

    from rewire import data as rdata
    from rewire.methods.dnw_profile import compact, profile_graph

    masked = model.eval()
    small = compact(masked)
    mean, std = rdata.normalisation_for(data.name)
    loader = rdata.BatchLoader(
        data.test_images, data.test_labels, batch_size, shuffle=False, augment=False, mean=mean, std=std, device=device
    )
    images = [x for x, _ in zip((b for b, _ in loader), range(batches))]
    speeds: dict[str, list[float]] = {"masked": [], "compact": []}
    with torch.no_grad():
        difference = max(float((masked(x) - small(x)).abs().max()) for x in images)
        for x in images:
            for name, candidate in (("masked", masked), ("compact", small)):
                tick = time.perf_counter()
                candidate(x)
                speeds[name].append(len(x) / (time.perf_counter() - tick))
    profile = profile_graph(masked, image_size=data.test_images.shape[-1])
    base = statistics.median(speeds["masked"])
    table = pd.DataFrame(
        [
            {
                "model": name,
                "images_per_s_median": float(statistics.median(values)),
                "ratio_to_masked": float(statistics.median(values) / base),
                "live_nodes": sum(s.live_nodes for s in profile.stages),
                "nodes": sum(s.nodes for s in profile.stages),
                "max_abs_output_difference": f"{difference:.1e}",
                "batches": len(values),
            }
            for name, values in speeds.items()
        ]
    )
    return table, difference
