"""Claims tables: does a paper's qualitative claim hold at this scale, given the seed noise?

A claim compares two numbers measured over the same seeds (e.g. DNW's and RG's test top-1).
Seeds pair the two sides (one seed fixes the data order, augmentation and initialisation of
both), so the statistic is the per-seed difference d_s = a_s - b_s: its mean and a two-sided
95 % Student-t interval, mean ± t_{0.975, n-1} · sd(d) / sqrt(n). With n = 3 seeds
t_{0.975, 2} = 4.30, so an interval excludes zero only when the effect is about 2.5 times its
seed-to-seed spread.

The verdict is read off the interval, never off the means alone:

==============  ====================================  =================================
kind            holds when                            reversed when
==============  ====================================  =================================
``greater``     a > b: lower bound > 0                upper bound < 0
``at_least``    a >= b: lower bound > -margin         upper bound < 0 (b clearly better)
``below``       a < threshold: upper bound < t        lower bound > t
``equivalent``  |a - b| < margin: interval inside     interval outside ±margin
==============  ====================================  =================================

and *inconclusive at this scale* otherwise. ``at_least`` is a non-inferiority test: the papers
write "comparable or better" (e.g. DPF vs Incremental), which a finite number of seeds can only
confirm up to a margin; :data:`DEFAULT_MARGIN` is this repository's choice, stated in every
table that uses it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats

__all__ = ["DEFAULT_MARGIN", "KINDS", "VERDICTS", "Claim", "interval", "judge", "claims_frame", "claims_markdown"]

DEFAULT_MARGIN = 1.0  # percentage points of top-1: "no worse than" up to one point (our choice)
CONFIDENCE = 0.95
KINDS = ("greater", "at_least", "below", "equivalent")
VERDICTS = ("holds", "reversed", "inconclusive at this scale")
MIN_SEEDS = 2  # an interval needs a spread; the guide asks for 3 and the tables say how many


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, as words and as the comparison that decides it.

    ``a`` and ``b`` map seed -> value (``b`` may be ``None`` for ``below``, which compares
    ``a`` with ``threshold``). Only seeds present on both sides are paired.
    """

    paper: str
    claim: str
    a_label: str
    a: Mapping[int, float]
    b_label: str = ""
    b: Mapping[int, float] | None = None
    kind: str = "greater"
    margin: float = DEFAULT_MARGIN
    threshold: float = 0.0
    unit: str = "top-1 %"
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"claim kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        if self.kind != "below" and self.b is None:
            raise ValueError(f"a {self.kind!r} claim compares two sides; give b (seed -> value)")
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")

    def differences(self) -> dict[int, float]:
        """Per-seed a - b (or a - threshold for ``below``), on the seeds both sides have."""
        if self.b is None:
            return {s: float(v) - self.threshold for s, v in sorted(self.a.items())}
        seeds = sorted(set(self.a) & set(self.b))
        return {s: float(self.a[s]) - float(self.b[s]) for s in seeds}


def interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and two-sided Student-t ``confidence`` interval of the mean of ``values``.

    Needs at least :data:`MIN_SEEDS` values; with identical values the interval has width 0.
    """
    n = len(values)
    if n < MIN_SEEDS:
        raise ValueError(f"an interval needs at least {MIN_SEEDS} seeds, got {n}; run more seeds")
    mean = math.fsum(values) / n
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def judge(kind: str, low: float, high: float, margin: float = DEFAULT_MARGIN) -> str:
    """The verdict for a difference interval [low, high] (see the module table).

    For ``below`` the interval is of a - threshold, so the test is against 0.
    """
    if kind not in KINDS:
        raise ValueError(f"claim kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if low > high:
        raise ValueError(f"interval bounds out of order: [{low}, {high}]")
    if kind == "greater":
        return "holds" if low > 0 else "reversed" if high < 0 else VERDICTS[2]
    if kind == "at_least":
        if high < 0:
            return "reversed"
        return "holds" if low > -margin else VERDICTS[2]
    if kind == "below":
        return "holds" if high < 0 else "reversed" if low > 0 else VERDICTS[2]
    # equivalent
    if -margin < low and high < margin:
        return "holds"
    return "reversed" if low >= margin or high <= -margin else VERDICTS[2]


def evaluate(claim: Claim, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """One row of a claims table: the two sides' means, the difference with its interval, the verdict."""
    diffs = claim.differences()
    seeds = sorted(diffs)
    mean, low, high = interval(list(diffs.values()), confidence)
    a_mean = math.fsum(float(claim.a[s]) for s in seeds) / len(seeds)
    b_mean = claim.threshold if claim.b is None else math.fsum(float(claim.b[s]) for s in seeds) / len(seeds)
    test = {
        "greater": "a > b",
        "at_least": f"a >= b - {claim.margin:g}",
        "below": f"a < {claim.threshold:g}",
        "equivalent": f"|a - b| < {claim.margin:g}",
    }[claim.kind]
    return {
        "paper": claim.paper,
        "claim": claim.claim,
        "a": claim.a_label,
        "a_mean": a_mean,
        "b": claim.b_label if claim.b is not None else f"threshold {claim.threshold:g}",
        "b_mean": b_mean,
        "difference": mean,
        "ci_low": low,
        "ci_high": high,
        "test": test,
        "unit": claim.unit,
        "seeds": len(seeds),
        "verdict": judge(claim.kind, low, high, claim.margin),
        "source": claim.source,
    }


def claims_frame(claims: Sequence[Claim], confidence: float = CONFIDENCE):
    """A pandas DataFrame with one row per claim (see :func:`evaluate`)."""
    import pandas as pd

    return pd.DataFrame([evaluate(c, confidence) for c in claims])


def _cell(text: Any) -> str:
    """Text safe inside a Markdown table cell (a literal ``|`` would end the cell)."""
    return str(text).replace("|", "\\|")


def claims_markdown(frame, *, title: str, caption: str = "") -> str:
    """The claims table as Markdown: claim, a vs b, difference [95 % CI], test, seeds, verdict."""
    lines = [f"### {title}", ""]
    if caption:
        lines += [caption, ""]
    lines += [
        "| claim | a | b | a − b [95 % CI] | test | seeds | verdict |",
        "|:--|:--|:--|:--|:--|--:|:--|",
    ]
    for row in frame.to_dict("records"):
        diff = f"{row['difference']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"
        claim = row["claim"] + (f" ({row['source']})" if row["source"] else "")
        lines.append(
            f"| {_cell(claim)} | {_cell(row['a'])}: {row['a_mean']:.2f} | {_cell(row['b'])}: {row['b_mean']:.2f} "
            f"| {diff} {row['unit']} | {_cell(row['test'])} | {row['seeds']} | **{row['verdict']}** |"
        )
    return "\n".join(lines) + "\n"
