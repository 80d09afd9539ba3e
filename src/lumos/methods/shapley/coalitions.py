"""Coalitions for Shapley estimators: enumeration, Shapley weights, the Shapley kernel and paired sampling.

A coalition is a boolean row over the ``d`` players (features or feature groups): ``True`` = the feature is
kept from the explained sample, ``False`` = replaced from the baseline/background.

- :func:`shapley_weights`: ``w(s) = s! (d - s - 1)! / d!``, the weight of ``v(S + i) - v(S)`` for ``|S| = s``;
- :func:`kernel_weight`: the Shapley kernel of Lundberg & Lee (2017),
  ``k(s) = (d - 1) / (C(d, s) s (d - s))`` for ``0 < s < d``;
- :class:`PairedStratifiedSampler`: the coalitions of KernelSHAP, drawn in complementary pairs ``(S, N \\ S)``
  and stratified by size (see its docstring).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

#: enumerate a stratum's units instead of rejection sampling when it has at most this many units
_ENUMERATE_LIMIT = 200_000


def all_coalitions(d: int) -> np.ndarray:
    """Every subset of ``d`` players as a ``(2**d, d)`` boolean array; row ``r`` holds the bits of ``r``."""
    codes = np.arange(2**d, dtype=np.int64)
    return ((codes[:, None] >> np.arange(d, dtype=np.int64)) & 1).astype(bool)


def shapley_weights(d: int) -> np.ndarray:
    """``w(s) = s! (d-1-s)! / d! = 1 / (d C(d-1, s))`` for ``s = 0 .. d-1`` (float64)."""
    return np.array([1.0 / (d * math.comb(d - 1, s)) for s in range(d)], dtype=np.float64)


def kernel_weight(d: int, s: int) -> float:
    """The Shapley kernel weight of one coalition of size ``s`` (``0 < s < d``)."""
    return (d - 1) / (math.comb(d, s) * s * (d - s))


@dataclass
class Stratum:
    """Coalitions of sizes ``k`` and ``d - k``, sampled as complementary pairs (units)."""

    k: int
    n_units: int  # number of distinct complementary pairs in the stratum
    mass: float  # total kernel weight of the stratum's coalitions
    units: list[np.ndarray]  # drawn units (the coalition holding the small side, or feature 0 when k = d/2)
    keys: set[bytes]

    @property
    def m(self) -> int:
        return sum(len(u) for u in self.units)

    @property
    def complete(self) -> bool:
        return self.m >= self.n_units


class PairedStratifiedSampler:
    """KernelSHAP coalitions: complementary pairs, stratified by size, small sizes enumerated first.

    The ``d - 1`` coalition sizes ``1 .. d-1`` form strata ``{k, d - k}``; a *unit* is a complementary pair
    ``(S, N \\ S)`` with ``|S| = k`` (paired, antithetic sampling: Covert & Lee 2021). A budget of
    ``n_coalitions`` (two per unit) is shared between strata in proportion to their kernel mass, capped at
    their size (water-filling). The strata of the smallest and largest sizes saturate first (their kernel
    weight per coalition is highest), so they are enumerated completely while the budget allows; this is the
    allocation of least variance when units vary alike, and it enumerates no stratum that would starve the
    others. Inside a stratum units are drawn uniformly without replacement; each coalition then carries the
    weight ``k(|S|) N_k / m_k`` (its kernel weight over its inclusion probability), so the weighted normal
    equations are unbiased for the exact ones, and exact when every stratum is complete.

    :meth:`extend` grows the sample to a larger budget (the ``tol=`` rounds), drawing only new units.
    """

    def __init__(self, d: int, rng: np.random.Generator) -> None:
        self.d = d
        self.rng = rng
        self.strata: list[Stratum] = []
        for k in range(1, d // 2 + 1):
            half = 2 * k == d
            n_units = math.comb(d, k) // 2 if half else math.comb(d, k)
            mass = (d - 1) / (k * (d - k)) * (1 if half else 2)
            self.strata.append(Stratum(k, n_units, mass, [], set()))

    @property
    def total_units(self) -> int:
        return sum(s.n_units for s in self.strata)

    @property
    def n_coalitions(self) -> int:
        """Coalitions drawn so far (two per unit)."""
        return 2 * sum(s.m for s in self.strata)

    @property
    def exact(self) -> bool:
        return all(s.complete for s in self.strata)

    # ------------------------------------------------------------------ allocation
    def _allocate(self, units: int) -> list[int]:
        """Units per stratum: proportional to mass, capped at each stratum's size, never below what is drawn."""
        floors = [s.m for s in self.strata]
        caps = [s.n_units for s in self.strata]
        alloc = list(floors)
        units = max(units, sum(floors))
        free = [i for i in range(len(self.strata)) if alloc[i] < caps[i]]
        left = units - sum(alloc)
        while left > 0 and free:
            mass = sum(self.strata[i].mass for i in free)
            share = {i: left * self.strata[i].mass / mass for i in free}
            # saturate strata whose share (with what they hold) reaches their size, then redistribute
            saturated = [i for i in free if alloc[i] + share[i] >= caps[i]]
            if saturated:
                for i in saturated:
                    left -= caps[i] - alloc[i]
                    alloc[i] = caps[i]
                free = [i for i in free if i not in saturated]
                continue
            base = {i: math.floor(share[i]) for i in free}
            for i in free:
                alloc[i] += base[i]
            rest = left - sum(base.values())
            order = sorted(free, key=lambda i: (-(share[i] - base[i]), i))  # largest remainders first
            for i in order[:rest]:
                alloc[i] += 1
            left = 0
        return alloc

    # ------------------------------------------------------------------ drawing
    def extend(self, n_coalitions: int) -> tuple[np.ndarray, np.ndarray]:
        """Grow the sample to about ``n_coalitions`` coalitions.

        Returns the new coalitions ``(2 u, d)`` as rows ``[S_1, N \\ S_1, S_2, N \\ S_2, ...]`` and the stratum
        of each new unit ``(u,)``.
        """
        alloc = self._allocate(max(1, n_coalitions // 2))
        new, labels = [], []
        for index, (stratum, target) in enumerate(zip(self.strata, alloc, strict=True)):
            extra = target - stratum.m
            if extra > 0:
                units = self._draw(stratum, extra)
                stratum.units.append(units)
                new.append(units)
                labels.append(np.full(len(units), index, dtype=np.int64))
        if not new:
            return np.zeros((0, self.d), dtype=bool), np.zeros(0, dtype=np.int64)
        small = np.concatenate(new)
        out = np.empty((2 * len(small), self.d), dtype=bool)
        out[0::2] = small
        out[1::2] = ~small
        return out, np.concatenate(labels)

    def _canonical(self, masks: np.ndarray, k: int) -> np.ndarray:
        if 2 * k == self.d:  # both sides have size d/2: the side that holds feature 0 names the unit
            flip = ~masks[:, 0]
            masks = masks.copy()
            masks[flip] = ~masks[flip]
        return masks

    def _draw(self, stratum: Stratum, count: int) -> np.ndarray:
        d, k = self.d, stratum.k
        remaining = stratum.n_units - stratum.m
        count = min(count, remaining)
        if stratum.n_units <= _ENUMERATE_LIMIT and (count == remaining or stratum.n_units <= 4 * (stratum.m + count)):
            members = np.array(list(itertools.combinations(range(d), k)), dtype=np.int64).reshape(-1, k)
            pool = np.zeros((len(members), d), dtype=bool)
            pool[np.arange(len(members))[:, None], members] = True
            # ascending order of the rows as bit strings (combinations come in descending order); the half
            # stratum names each unit twice and needs the dedup
            pool = np.unique(self._canonical(pool, k), axis=0) if 2 * k == d else pool[::-1]
            keys = _row_keys(pool)
            fresh = np.array([key not in stratum.keys for key in keys], dtype=bool)
            pool, keys = pool[fresh], [key for key, f in zip(keys, fresh, strict=True) if f]
            chosen = np.sort(self.rng.choice(len(pool), size=count, replace=False))
            stratum.keys.update(keys[i] for i in chosen)
            return pool[chosen]
        parts: list[np.ndarray] = []
        found = 0
        while found < count:
            need = count - found
            draws = self.rng.random((need + need // 4 + 4, d)).argsort(axis=1)[:, :k]
            masks = np.zeros((len(draws), d), dtype=bool)
            np.put_along_axis(masks, draws, True, axis=1)
            masks = self._canonical(masks, k)
            # the first occurrence of each key not drawn before, in drawing order, up to ``need`` rows
            keys = _row_keys(masks)
            seen = stratum.keys
            accepted = []
            for index, key in enumerate(keys):
                if key not in seen:
                    seen.add(key)
                    accepted.append(index)
                    if len(accepted) == need:
                        break
            parts.append(masks[accepted])
            found += len(accepted)
        return np.concatenate(parts)

    # ------------------------------------------------------------------ the design
    def weights(self, unit_strata: np.ndarray) -> np.ndarray:
        """Weight of each coalition of units from strata ``unit_strata`` (pairs adjacent): ``k(k) N_k / m_k``."""
        per_stratum = np.array([kernel_weight(self.d, s.k) * s.n_units / max(s.m, 1) for s in self.strata])
        return np.repeat(per_stratum[unit_strata], 2)

    def stratum_info(self) -> list[tuple[int, int]]:
        """``(m_k, N_k)`` of each stratum: units drawn and units in the stratum."""
        return [(s.m, s.n_units) for s in self.strata]


def _row_keys(masks: np.ndarray) -> list[bytes]:
    """A hashable key per boolean row (its packed bits), computed for all rows at once."""
    packed = np.ascontiguousarray(np.packbits(masks, axis=1))
    return packed.view(f"V{packed.shape[1]}").ravel().tolist()


def antithetic_permutations(rng: np.random.Generator, n_permutations: int, d: int, *,
                            antithetic: bool = True) -> np.ndarray:
    """``(n_permutations, d)`` random orderings of ``d`` players; with ``antithetic`` every odd row is the
    reverse of the row before it (``n_permutations`` must then be even)."""
    if antithetic:
        half = rng.random((n_permutations // 2, d)).argsort(axis=1)
        out = np.empty((n_permutations, d), dtype=np.int64)
        out[0::2] = half
        out[1::2] = half[:, ::-1]
        return out
    return rng.random((n_permutations, d)).argsort(axis=1)
