"""Secondary suppression: which further cells of a report to withhold so that no "<5" can be recomputed.

A report is a set of integer cells tied by linear relations that any reader knows (a total is the sum of its
groups, rejections by reason add up to all rejections, participants are at most participations, …). A reader
who sees the published cells and knows the relations can narrow each withheld cell to an interval; a cell
of 0–4 persons whose interval shrinks to one value is recovered. `protect` withholds further cells (the
"secondary" ones, value 5 or more) until bound reasoning over all relations pins no primary cell.

The reader's model (docs/reporting-suppression.md): a shown cell is exact; "<5" is 0–4; a secondarily
withheld cell is at least 5 (the rule withholds no "<5" that way); an unpublished remainder
(e.g. persons with two participations) is at least 0.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import z3

from qti_contracts import MIN_GROUP_SIZE

CellKey = Hashable
# Σ coefficient · cell = 0, coefficients ±1.
Equation = tuple[tuple[int, CellKey], ...]
Bounds = tuple[float, float]

INF: Final = math.inf
PRIMARY_RANGE: Final[Bounds] = (0, MIN_GROUP_SIZE - 1)
SECONDARY_RANGE: Final[Bounds] = (MIN_GROUP_SIZE, INF)
HIDDEN_RANGE: Final[Bounds] = (0, INF)
_MAX_STEPS: Final = 1_000_000
_MAX_ROUNDS: Final = 400
_SEARCH_DEPTH: Final = 3


@dataclass
class CellSystem:
    """The cells of one report, what the reader knows of each, and the relations between them."""

    values: dict[CellKey, int] = field(default_factory=dict)
    primary: dict[CellKey, Bounds] = field(default_factory=dict)  # withheld because few persons
    hidden: set[CellKey] = field(default_factory=set)  # never published (remainders)
    equations: list[Equation] = field(default_factory=list)
    # Lower first: which cells to withhold when several would do (totals and headline figures last).
    rank: dict[CellKey, int] = field(default_factory=dict)

    def add_hidden(self, cell: CellKey) -> CellKey:
        """An unpublished remainder (at least 0) that relations may use."""
        self.values.setdefault(cell, 0)
        self.hidden.add(cell)
        return cell

    def by_cell(self) -> dict[CellKey, list[int]]:
        """For each cell, the indexes of the equations it is in."""
        index: dict[CellKey, list[int]] = {cell: [] for cell in self.values}
        for number, equation in enumerate(self.equations):
            for _, cell in equation:
                index[cell].append(number)
        return index

    def add_equation(self, terms: Iterable[tuple[int, CellKey]]) -> None:
        equation = tuple(terms)
        if len(equation) > 1 and all(cell in self.values for _, cell in equation):
            self.equations.append(equation)


def reader_bounds(system: CellSystem, secondary: set[CellKey]) -> dict[CellKey, Bounds]:
    """What bound reasoning over every relation tells a reader about each cell (a work list: a relation is
    looked at again only when a bound of one of its cells got tighter)."""
    bounds: dict[CellKey, Bounds] = {}
    for cell, value in system.values.items():
        if cell in system.hidden:
            bounds[cell] = HIDDEN_RANGE
        elif cell in system.primary:
            bounds[cell] = system.primary[cell]
        elif cell in secondary:
            bounds[cell] = SECONDARY_RANGE
        else:
            bounds[cell] = (value, value)
    by_cell = system.by_cell()
    pending = deque(
        i for i, eq in enumerate(system.equations) if any(bounds[c][0] != bounds[c][1] for _, c in eq)
    )
    queued = set(pending)
    for _ in range(_MAX_STEPS):
        if not pending:
            break
        index = pending.popleft()
        queued.discard(index)
        for cell in _tighten(system.equations[index], bounds):
            for other in by_cell[cell]:
                if other not in queued:
                    queued.add(other)
                    pending.append(other)
    return bounds


def _tighten(equation: Equation, bounds: dict[CellKey, Bounds]) -> list[CellKey]:
    """Interval reasoning over one equation; the cells whose bounds got tighter."""
    parts = [_contribution(coefficient, bounds[cell]) for coefficient, cell in equation]
    low_sum = sum(low for low, _ in parts if low != -INF)
    high_sum = sum(high for _, high in parts if high != INF)
    low_open = sum(1 for low, _ in parts if low == -INF)
    high_open = sum(1 for _, high in parts if high == INF)
    changed = []
    for (coefficient, cell), (low, high) in zip(equation, parts, strict=True):
        # The others' sum, without this cell's own contribution.
        others_low = -INF if low_open - (low == -INF) else low_sum - (low if low != -INF else 0)
        others_high = INF if high_open - (high == INF) else high_sum - (high if high != INF else 0)
        # coefficient · cell = −(others) ∈ [−others_high, −others_low]
        lo_new, hi_new = (-others_high, -others_low) if coefficient > 0 else (others_low, others_high)
        old_lo, old_hi = bounds[cell]
        lo_new = max(old_lo, math.ceil(lo_new) if lo_new != -INF else -INF)
        hi_new = min(old_hi, math.floor(hi_new) if hi_new != INF else INF)
        if lo_new > hi_new:  # relations the data does not quite keep: learn nothing from them
            continue
        if (lo_new, hi_new) != (old_lo, old_hi):
            bounds[cell] = (lo_new, hi_new)
            changed.append(cell)
    return changed


def _contribution(coefficient: int, bounds: Bounds) -> Bounds:
    a, b = coefficient * bounds[0], coefficient * bounds[1]
    return (min(a, b), max(a, b))


def pinned(system: CellSystem, secondary: set[CellKey]) -> list[CellKey]:
    """Primary cells a reader can recompute exactly."""
    bounds = reader_bounds(system, secondary)
    return [cell for cell in system.primary if bounds[cell][0] >= bounds[cell][1]]


def exact_pinned(system: CellSystem, secondary: set[CellKey]) -> list[CellKey]:
    """Primary cells a reader can recompute by exact integer reasoning over all relations at once (z3).

    Bound reasoning misses what only a combination of relations gives away; this finds it. Each model
    found with some primary cell off its true value frees every cell that differs in it, so a few
    solver calls settle hundreds of cells.
    """
    solver = z3.Solver()
    variables = {cell: z3.Int(f"c{number}") for number, cell in enumerate(system.values)}
    for cell, variable in variables.items():
        low, high = _reader_range(system, secondary, cell)
        solver.add(variable >= low)
        if high != INF:
            solver.add(variable <= high)
    for equation in system.equations:
        solver.add(z3.Sum([coefficient * variables[cell] for coefficient, cell in equation]) == 0)
    open_cells = [cell for cell in system.primary]
    while open_cells:
        solver.push()
        solver.add(z3.Or([variables[cell] != system.values[cell] for cell in open_cells]))
        if solver.check() != z3.sat:
            solver.pop()
            return open_cells
        model = solver.model()
        solver.pop()
        open_cells = [
            cell for cell in open_cells if model.eval(variables[cell]).as_long() == system.values[cell]
        ]
    return []


def _reader_range(system: CellSystem, secondary: set[CellKey], cell: CellKey) -> Bounds:
    if cell in system.hidden:
        return HIDDEN_RANGE
    if cell in system.primary:
        return system.primary[cell]
    if cell in secondary:
        return SECONDARY_RANGE
    value = system.values[cell]
    return (value, value)


def protect(system: CellSystem) -> set[CellKey]:
    """The secondary cells: withheld as well, so that no primary cell is pinned. Greedy: bound reasoning
    first (cheap), then an exact check; each pinned cell gets one more withheld cell beside it."""
    secondary: set[CellKey] = set()
    by_cell = _equations_by_cell(system.equations)
    for _ in range(_MAX_ROUNDS):
        exposed = pinned(system, secondary) or exact_pinned(system, secondary)
        if not exposed:
            return secondary
        added = {choice for cell in exposed if (choice := _complement(cell, system, secondary, by_cell))}
        if not added:
            # Nothing near enough: look through every relation the cell is connected to.
            whole = len(system.equations) + 1
            added = {c for cell in exposed if (c := _complement(cell, system, secondary, by_cell, whole))}
        if not added:
            return secondary  # nothing left to withhold; see the limits in the docs
        secondary |= added
    return secondary


def _equations_by_cell(equations: Sequence[Equation]) -> dict[CellKey, list[Equation]]:
    index: dict[CellKey, list[Equation]] = {}
    for equation in equations:
        for _, cell in equation:
            index.setdefault(cell, []).append(equation)
    return index


def _complement(
    start: CellKey,
    system: CellSystem,
    secondary: set[CellKey],
    by_cell: Mapping[CellKey, list[Equation]],
    depth_limit: int = _SEARCH_DEPTH,
) -> CellKey | None:
    """The best shown cell to withhold for `start`: among the cells of the relations around it (reached
    through withheld cells, `_SEARCH_DEPTH` relations deep), the one of lowest rank (breakdowns before
    headline figures, groups before totals), then the nearest, then the largest."""

    def withheld(cell: CellKey) -> bool:
        return cell in system.primary or cell in secondary or cell in system.hidden

    seen, frontier = {start}, [start]
    candidates: list[tuple[int, int, int, str, CellKey]] = []
    for depth in range(depth_limit):
        following: list[CellKey] = []
        for cell in frontier:
            for equation in by_cell.get(cell, []):
                for _, other in equation:
                    if other in seen:
                        continue
                    seen.add(other)
                    if withheld(other):
                        following.append(other)
                    elif system.values[other] >= MIN_GROUP_SIZE:
                        rank = system.rank.get(other, 0)
                        candidates.append((rank, depth, -system.values[other], repr(other), other))
        frontier = following
    return min(candidates)[-1] if candidates else None
