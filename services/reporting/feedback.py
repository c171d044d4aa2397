"""Feedback of participants: scores per offering, topic and node under the one suppression rule, and
free text for the staff of one node only.

Scores come from `registration.feedback.submitted` (offering id and scores; no person). A group of
fewer than 5 answers shows no figure ("<5"); further groups are withheld ("gesperrt") until no "<5"
group's count or score sums can be recomputed from the others and the totals — the same rule and the same
solver as every other report (`services/reporting/suppression.py`). Offerings nest in topics and nodes,
so those relations are given to it too.

Free text never enters the raw log, the projections, `/kpis`, exports, snapshots or KPI events: it is
kept in `feedback_comments` only and read per node with the staff token.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

import asyncpg
from pydantic import ValidationError

from qti_contracts import MIN_GROUP_SIZE, TOPIC_LABELS, FeedbackSubmitted, RawEvent, RoutingKey, Topic
from services.reporting.domain import SUPPRESSED, WITHHELD
from services.reporting.suppression import CellKey, CellSystem, protect

METRICS: Final = ("answers", "rating_sum", "usefulness_sum", "recommend_yes")
TOTAL: Final = "total"
DIMENSIONS: Final = ("offering", "topic", "node")


@dataclass(frozen=True, slots=True)
class Sums:
    answers: int
    rating_sum: int
    usefulness_sum: int
    recommend_yes: int

    def get(self, metric: str) -> int:
        value: int = getattr(self, metric)
        return value


@dataclass(frozen=True, slots=True)
class OfferingSums:
    offering_id: str
    topic: str
    node_id: str
    sums: Sums


# ------------------------------------------------------------------------------------------- comments


async def keep_comments(conn: asyncpg.Connection, events: Sequence[RawEvent], fresh: set[str]) -> None:
    """Store the free text of fresh feedback events (never logged: the raw log keeps scores only)."""
    rows = []
    for event in events:
        if event.type != RoutingKey.FEEDBACK_SUBMITTED or event.id not in fresh:
            continue
        try:
            answer = FeedbackSubmitted.model_validate(event.data)
        except ValidationError:
            continue  # the log marks it invalid; nothing to keep
        if answer.comment:
            day = event.time.date() if event.time else date.today()
            rows.append((event.id, answer.offering_id, day, answer.comment))
    if rows:
        await conn.executemany(
            "INSERT INTO feedback_comments (event_id, offering_id, received_on, comment)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING",
            rows,
        )


async def comments_of_node(conn: asyncpg.Connection, node_id: str, limit: int) -> list[dict[str, Any]]:
    records = await conn.fetch(
        "SELECT c.offering_id, c.received_on, c.comment FROM feedback_comments c"
        " JOIN offerings o USING (offering_id) WHERE o.node_id = $1"
        " ORDER BY c.received_on DESC, c.offering_id LIMIT $2",
        node_id,
        limit,
    )
    return [dict(r) for r in records]


# --------------------------------------------------------------------------------------------- scores


async def offering_sums(conn: asyncpg.Connection) -> list[OfferingSums]:
    records = await conn.fetch(
        "SELECT a.offering_id, coalesce(o.topic, 'unbekannt') AS topic,"
        " coalesce(o.node_id, 'unbekannt') AS node_id, count(*) AS answers,"
        " sum(a.rating) AS rating_sum, sum(a.usefulness) AS usefulness_sum,"
        " count(*) FILTER (WHERE a.would_recommend) AS recommend_yes"
        " FROM feedback_answers a LEFT JOIN offerings o USING (offering_id)"
        " GROUP BY a.offering_id, o.topic, o.node_id ORDER BY a.offering_id"
    )
    return [
        OfferingSums(
            r["offering_id"],
            r["topic"],
            r["node_id"],
            Sums(int(r["answers"]), int(r["rating_sum"]), int(r["usefulness_sum"]), int(r["recommend_yes"])),
        )
        for r in records
    ]


def _add(a: Sums, b: Sums) -> Sums:
    return Sums(
        a.answers + b.answers,
        a.rating_sum + b.rating_sum,
        a.usefulness_sum + b.usefulness_sum,
        a.recommend_yes + b.recommend_yes,
    )


def _groups(offerings: Sequence[OfferingSums]) -> dict[str, dict[str, Sums]]:
    """Sums per dimension and group, and the total (dimension `total`, group `all`)."""
    empty = Sums(0, 0, 0, 0)
    tables: dict[str, dict[str, Sums]] = {name: defaultdict(lambda: empty) for name in (*DIMENSIONS, TOTAL)}
    for item in offerings:
        for name, key in (("offering", item.offering_id), ("topic", item.topic), ("node", item.node_id)):
            tables[name][key] = _add(tables[name][key], item.sums)
        tables[TOTAL]["all"] = _add(tables[TOTAL]["all"], item.sums)
    return {name: dict(groups) for name, groups in tables.items()}


def _system(offerings: Sequence[OfferingSums], tables: dict[str, dict[str, Sums]]) -> CellSystem:
    system = CellSystem()
    for name, groups in tables.items():
        for key, sums in groups.items():
            cells = {metric: (name, key, metric) for metric in METRICS}
            for metric, cell in cells.items():
                system.values[cell] = sums.get(metric)
                system.rank[cell] = 2 if name == TOTAL else 1 if name != "offering" else 0
            if sums.answers < MIN_GROUP_SIZE:
                few = MIN_GROUP_SIZE - 1
                bounds = {
                    "answers": few,
                    "recommend_yes": few,
                    "rating_sum": 5 * few,
                    "usefulness_sum": 5 * few,
                }
                for metric, cell in cells.items():
                    system.primary[cell] = (0, bounds[metric])
            # Within a group: recommendations and score sums are bounded by the number of answers.
            no = system.add_hidden((name, key, "~no"))
            system.add_equation([(1, cells["answers"]), (-1, cells["recommend_yes"]), (-1, no)])
            for score in ("rating_sum", "usefulness_sum"):
                extra = system.add_hidden((name, key, f"~{score}"))
                system.add_equation([(1, cells[score]), (-1, cells["answers"]), (-1, extra)])
    for metric in METRICS:
        total = (TOTAL, "all", metric)
        for name in DIMENSIONS:
            system.add_equation([(1, total), *((-1, (name, key, metric)) for key in tables[name])])
        for name, attribute in (("topic", "topic"), ("node", "node_id")):
            for key in tables[name]:
                members = [o.offering_id for o in offerings if getattr(o, attribute) == key]
                system.add_equation(
                    [(1, (name, key, metric)), *((-1, ("offering", m, metric)) for m in members)]
                )
    return system


def _shown(name: str, key: str, sums: Sums, system: CellSystem, secondary: set[CellKey]) -> dict[str, Any]:
    marks = {
        metric: SUPPRESSED if (name, key, metric) in system.primary else WITHHELD
        for metric in METRICS
        if (name, key, metric) in system.primary or (name, key, metric) in secondary
    }
    row: dict[str, Any] = {"group": key, "suppressed": bool(marks)}
    if marks:
        marker = SUPPRESSED if SUPPRESSED in marks.values() else WITHHELD
        return {**row, "answers": marks.get("answers", sums.answers), "marker": marker}
    return {
        **row,
        "answers": sums.answers,
        "rating": round(sums.rating_sum / sums.answers, 1),
        "usefulness": round(sums.usefulness_sum / sums.answers, 1),
        "would_recommend_share": round(sums.recommend_yes / sums.answers, 3),
    }


def publish(offerings: Sequence[OfferingSums], node_names: dict[str, str]) -> dict[str, Any]:
    """The published figures: per dimension a list of groups, and the total; means only where no cell
    behind them is withheld."""
    tables = _groups(offerings)
    system = _system(offerings, tables)
    secondary = protect(system) if system.primary else set()
    labels = {
        "topic": {t.value: TOPIC_LABELS[t] for t in Topic},
        "node": node_names,
    }
    result: dict[str, Any] = {"min_group_size": MIN_GROUP_SIZE}
    for name in DIMENSIONS:
        rows = []
        for key in sorted(tables[name]):
            row = _shown(name, key, tables[name][key], system, secondary)
            row["label"] = labels.get(name, {}).get(key, key)
            rows.append(row)
        result[name] = rows
    total = tables[TOTAL].get("all")
    result[TOTAL] = _shown(TOTAL, "all", total, system, secondary) if total else None
    return result
