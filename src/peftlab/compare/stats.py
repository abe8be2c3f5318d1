"""Uncertainty for the comparison's verdicts: Wilson intervals for exact match, and a
paired bootstrap over eval records (and seeds) for differences between methods.

Paired: every method is scored on the same eval records, so each bootstrap replicate
draws one set of record indices and recomputes *both* methods' figures on it; the
spread of the difference then reflects the records, not two independent noises.
With several seeds per method, each replicate also draws seeds (the same draw for both
methods when they ran the same seeds) and averages the methods' figures over them, so
seed-to-seed variation widens the interval too (a two-level bootstrap).

Perplexity on a replicate is exp(sum NLL / sum tokens) over the drawn records, the same
token-weighted definition as the eval itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # the standard normal's 97.5% quantile
N_BOOT = 2000
"""Bootstrap replicates: percentiles of a 95% interval are stable to about ±1% of its
width at this count, and it takes milliseconds for eval sets of hundreds of records."""


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n (Wilson, 1927): unlike the
    normal approximation it stays inside [0, 1] and behaves at k = 0 or n."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass
class Interval:
    estimate: float
    low: float
    high: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def _seed_draws(rng, n_seeds: int, n_boot: int) -> np.ndarray:
    if n_seeds == 1:
        return np.zeros((n_boot, 1), dtype=int)
    return rng.integers(0, n_seeds, size=(n_boot, n_seeds))


def _ppl(nll: np.ndarray, tok: np.ndarray, idx: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Mean over the drawn seeds of exp(sum nll / sum tokens) over the drawn records.
    ``nll``/``tok``: seeds x records; ``idx``: replicates x records; ``seeds``:
    replicates x drawn seeds."""
    out = np.zeros(idx.shape[0])
    for j in range(seeds.shape[1]):
        s = seeds[:, j]
        num = np.take_along_axis(nll[s], idx, axis=1).sum(axis=1)
        den = np.take_along_axis(tok[s], idx, axis=1).sum(axis=1)
        out += np.exp(num / np.maximum(den, 1))
    return out / seeds.shape[1]


def _rate(hits: np.ndarray, idx: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    out = np.zeros(idx.shape[0])
    for j in range(seeds.shape[1]):
        out += np.take_along_axis(hits[seeds[:, j]], idx, axis=1).mean(axis=1)
    return out / seeds.shape[1]


def paired_difference(
    a: dict, b: dict, kind: str, n_boot: int = N_BOOT, seed: int = 0
) -> Interval | None:
    """95% interval of (figure of a) - (figure of b) over shared records (and seeds).

    ``a``/``b``: per-seed lists of per-record values: for ``kind="perplexity"``
    ``{"nll": [[...], ...], "tokens": [[...], ...]}``, for ``kind="exact"``
    ``{"hits": [[...], ...]}``. None when the two were not scored on the same records.
    """
    key = "nll" if kind == "perplexity" else "hits"
    if not a.get(key) or not b.get(key):
        return None
    n = {len(r) for r in a[key]} | {len(r) for r in b[key]}
    if len(n) != 1 or 0 in n:
        return None
    n_rec = n.pop()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_rec, size=(n_boot, n_rec))
    sa = _seed_draws(rng, len(a[key]), n_boot)
    sb = sa if len(b[key]) == len(a[key]) else _seed_draws(rng, len(b[key]), n_boot)
    full = np.tile(np.arange(n_rec), (1, 1))
    if kind == "perplexity":
        arrs = [(np.asarray(x["nll"], float), np.asarray(x["tokens"], float)) for x in (a, b)]
        boot = _ppl(*arrs[0], idx, sa) - _ppl(*arrs[1], idx, sb)
        est = (_ppl(*arrs[0], full, _all(len(a[key]))) - _ppl(*arrs[1], full, _all(len(b[key]))))[0]
    else:
        ha, hb = (np.asarray(x["hits"], float) for x in (a, b))
        boot = _rate(ha, idx, sa) - _rate(hb, idx, sb)
        est = (_rate(ha, full, _all(len(a[key]))) - _rate(hb, full, _all(len(b[key]))))[0]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return Interval(float(est), float(lo), float(hi))


def _all(n_seeds: int) -> np.ndarray:
    return np.arange(n_seeds)[None, :]


def spread(values: list[float]) -> tuple[float, float] | None:
    """Mean and sample standard deviation over seeds (None for fewer than two)."""
    if len(values) < 2:
        return None
    return float(np.mean(values)), float(np.std(values, ddof=1))


def perplexity_interval(
    nll: list[float], tokens: list[int], n_boot: int = N_BOOT, seed: int = 0
) -> tuple[float, float] | None:
    """95% bootstrap interval of one run's perplexity over its eval records."""
    if not nll or len(nll) != len(tokens):
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(nll), size=(n_boot, len(nll)))
    boot = _ppl(
        np.asarray([nll], float), np.asarray([tokens], float), idx, np.zeros((n_boot, 1), dtype=int)
    )
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(lo), float(hi)
