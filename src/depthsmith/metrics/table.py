"""The metric table: one record per depth metric, and everything else reads it.

A record says how the metric is computed (per-pixel terms summed over the valid pixels of an image,
and the metric from those sums; or per image, for R^2), which way is better, and its titles. The
metric functions, ``METRIC_KEYS``, the scorer, and the columns of the evaluation table
(``evaluate/output.py``), the multi-dataset table (``evaluate/multi.py``), the report
(``report/table.py``) and the model card (``models/card.py``) all come from here, so adding a metric
is one ``register_metric(Metric(...))`` call.

Formulas: Eigen et al. 2014 (abs_rel, sq_rel, rmse, rmse_log, delta), as BTS's and AdaBins'
``compute_errors`` code writes them; log10 as in Laina et al. 2016; SILog as BTS / KITTI's
(100 x sqrt(var of log error)); silog_da as Depth-Anything-V2's ``metric_depth/util/metric.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..registry import Registry

__all__ = ["Metric", "METRICS", "TABLES", "register_metric", "metrics_in", "sum_terms", "MetricKeys", "METRIC_KEYS"]

Term = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (pred, gt) 1-D arrays -> one value per pixel

# The tables a metric can be a column of: the printed evaluation table with metrics.json and
# per_image.csv; the multi-dataset summary; the Markdown report; the model card.
TABLES = ("eval", "summary", "report", "card")


@dataclass(frozen=True)
class Metric:
    key: str
    title: str  # plain-text column title (8 characters fit the printed table)
    better: str  # "lower" or "higher"
    # Per-pixel terms summed over an image's valid pixels, by name (two metrics using the same
    # name share the sum, so they must give the same function), and the metric from those sums
    # (plus "n", the number of pixels). None: computed per image by the scorer (R^2).
    terms: Mapping[str, Term] = field(default_factory=dict)
    from_sums: Callable[[Mapping[str, float]], float] | None = None
    symbol: str = ""  # title in Markdown tables, e.g. "δ<1.25"; the plain title if empty
    unit: str = ""  # "m" for metres; empty for unitless metrics
    # An unmasked protocol (the seed's) counts the crop's holes (gt = 0) in this metric; its terms
    # must be finite at gt = 0 (RMSE: the squared error is pred^2; delta: the ratio is inf, a failure).
    holes: bool = False
    tables: frozenset[str] = frozenset(TABLES)

    def __post_init__(self) -> None:
        if self.better not in ("lower", "higher"):
            raise ValueError(f"metric {self.key!r}: better must be 'lower' or 'higher'")  # internal: a code error
        if (self.from_sums is None) != (not self.terms):
            raise ValueError(f"metric {self.key!r}: give terms and from_sums together")  # internal: a code error
        if not self.tables <= set(TABLES):
            raise ValueError(f"metric {self.key!r}: tables must be among {TABLES}")  # internal: a code error

    @property
    def per_image(self) -> bool:
        """True for a metric the scorer computes per image (not from summed terms)."""
        return self.from_sums is None

    @property
    def heading(self) -> str:
        """Markdown column heading: symbol, unit and the better direction ("RMSE (m) ↓")."""
        unit = f" ({self.unit})" if self.unit else ""
        return f"{self.symbol or self.title}{unit} {'↓' if self.better == 'lower' else '↑'}"


METRICS: Registry[Metric] = Registry("metric")


def register_metric(metric: Metric) -> Metric:
    """Add a metric to the table; its shared term names must keep their functions."""
    for name, fn in metric.terms.items():
        if name == "n":
            raise ValueError("term name 'n' is the pixel count")  # internal: a code error
        for other in METRICS.values():
            if other.terms.get(name, fn) is not fn:
                raise ValueError(f"metric {metric.key!r}: term {name!r} is already "  # internal: a code error
                                 f"defined differently by {other.key!r}")
    return METRICS.add(metric.key, metric)


def metrics_in(table: str | None = None) -> list[Metric]:
    """The metrics of one table (all of them with ``None``), in registration order."""
    return [m for m in METRICS.values() if table is None or table in m.tables]


def sum_terms(holes: bool = False) -> dict[str, Term]:
    """Every term the summed metrics need (only those of ``holes`` metrics with ``holes=True``)."""
    out: dict[str, Term] = {}
    for metric in METRICS.values():
        if not holes or metric.holes:
            out.update(metric.terms)
    return out


class MetricKeys(Sequence[str]):
    """The keys of the summed metrics, read from the table at each use (a registered metric shows)."""

    def _keys(self) -> list[str]:
        return [m.key for m in METRICS.values() if not m.per_image]

    def __getitem__(self, i):  # type: ignore[override]
        return self._keys()[i]

    def __len__(self) -> int:
        return len(self._keys())

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __repr__(self) -> str:
        return repr(tuple(self._keys()))


METRIC_KEYS = MetricKeys()


def _err(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    return p - g


def _log_err(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log(g)


def _ratio(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    return np.maximum(p / g, g / p)


def _mean(term: str) -> Callable[[Mapping[str, float]], float]:
    return lambda s: s[term] / s["n"]


def _silog_var(s: Mapping[str, float], lam: float) -> float:
    mean_log, mean_log_sq = s["log"] / s["n"], s["log_sq"] / s["n"]
    # max(., 0): rounding can make the variance a hair negative when all errors are equal.
    return max(mean_log_sq - lam * mean_log**2, 0.0)


_LOG_TERMS: dict[str, Term] = {"log": _log_err, "log_sq": lambda p, g: _log_err(p, g) ** 2}


def _delta(k: int) -> Term:
    return lambda p, g: (_ratio(p, g) < 1.25**k).astype(np.float64)


for _metric in (
    Metric("abs_rel", "AbsRel", "lower", {"abs_rel": lambda p, g: np.abs(_err(p, g)) / g}, _mean("abs_rel")),
    Metric("sq_rel", "SqRel", "lower", {"sq_rel": lambda p, g: _err(p, g) ** 2 / g}, _mean("sq_rel"),
           tables=frozenset({"eval", "card"})),
    Metric("rmse", "RMSE", "lower", {"sq_err": lambda p, g: _err(p, g) ** 2}, lambda s: math.sqrt(s["sq_err"] / s["n"]),
           unit="m", holes=True),
    Metric("rmse_log", "RMSElog", "lower", {"log_sq": _LOG_TERMS["log_sq"]}, lambda s: math.sqrt(s["log_sq"] / s["n"]),
           tables=frozenset({"eval", "card"})),
    Metric("log10", "log10", "lower", {"log10": lambda p, g: np.abs(np.log10(p) - np.log10(g))}, _mean("log10")),
    Metric("silog", "SILog", "lower", _LOG_TERMS, lambda s: 100.0 * math.sqrt(_silog_var(s, 1.0)),
           tables=frozenset({"eval", "summary"})),
    Metric("d1", "d1", "higher", {"d1": _delta(1)}, _mean("d1"), symbol="δ<1.25", holes=True),
    Metric("d2", "d2", "higher", {"d2": _delta(2)}, _mean("d2"), symbol="δ<1.25²", holes=True),
    Metric("d3", "d3", "higher", {"d3": _delta(3)}, _mean("d3"), symbol="δ<1.25³", holes=True),
    # Depth-Anything-V2 / MMSeg's SILog, named apart: lambda = 0.5 and no x100.
    Metric("silog_da", "SILog_DA", "lower", _LOG_TERMS, lambda s: math.sqrt(_silog_var(s, 0.5)),
           tables=frozenset({"eval"})),
    # Coefficient of determination per image (metrics.r2_score), averaged by the protocol's rule.
    Metric("r2", "R^2", "higher", symbol="R²", tables=frozenset({"eval", "report"})),
):
    register_metric(_metric)
