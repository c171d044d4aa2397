"""The end-to-end results as one table (what, measured, relative to the machine's limits, goal), printed
with rich and written as Markdown next to the full JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

GOAL_RATE = 300.0  # decided/s, flat out, sustained for GOAL_SECONDS
GOAL_SECONDS = 60.0
GOAL_P99_MS = 250.0  # request → outcome at GOAL_OFFERED
GOAL_OFFERED = 150.0
NOISY_PERCENT = 20.0  # CPU of other programs (% of a core) from which a phase's figures are flagged
CPU_NAMES = {"rabbitmq": "RabbitMQ", "postgres": "Postgres"}

Row = tuple[str, str, str, str]


def _check(ok: bool) -> str:
    return "✓" if ok else "✗"


def _latency(figures: dict[str, float | None]) -> str:
    if figures["p50_ms"] is None:
        return "no samples"
    return f"p50 {figures['p50_ms']:g} ms, p95 {figures['p95_ms']:g} ms, p99 {figures['p99_ms']:g} ms"


def _share(value: float, limit: float) -> str:
    return f"{value / limit:.0%}" if limit else "–"


def _backlog(phase: dict[str, Any], top: int = 3) -> str:
    """The queues that filled up most during the window: the stages that could not keep up."""
    peak, end = phase["queue_backlog_peak"], phase["queue_backlog_end"]
    filled = sorted((n for n in peak if peak[n] > 0), key=lambda n: -peak[n])[:top]
    return ", ".join(f"{n} {peak[n]:,} (end {end.get(n, 0):,})" for n in filled) or "none"


def _rest_mailed(phase: dict[str, Any]) -> str:
    """How the mail backlog left at the end of the window went out (the sender's rate without load)."""
    mailed = phase["mailed_after_s"]
    if mailed is None:
        return "backlog not mailed in time"
    return f"the rest within {mailed:g} s after it ({phase.get('mails_per_s_after_window', 0):,.0f}/s)"


def _lag(phase: dict[str, Any]) -> str:
    lag = phase["reporting_lag_s"]
    return "not caught up" if lag is None else f"{lag:g} s"


def flat_out_rows(phase: dict[str, Any], results: dict[str, Any]) -> list[Row]:
    limits, per = results["limits"], results["per_registration"]
    decided, seconds = phase["decided_per_s"], phase["seconds"]
    replicas = results["options"]["replicas"]
    publishes, deliveries = decided * per["publishes"], decided * per["deliveries"]
    goal = f"≥ {GOAL_RATE:g}/s for {GOAL_SECONDS:g} s " + (
        _check(decided >= GOAL_RATE) if seconds >= GOAL_SECONDS else f"(ran {seconds:g} s)"
    )
    commits = phase["postgres_commits_per_s"]
    return [
        (
            f"decided registrations/s, flat out {seconds:g} s ({results['options']['window']} undecided at a "
            f"time, {replicas['registration']} registration replicas)",
            f"{decided:,.0f}/s (lowest 5 s: {phase['decided_lowest_5s_per_s']:,.0f}/s)",
            f"{decided / limits['publish_per_s']:.1%} of the broker publish limit; with "
            f"{per['publishes']:g} publishes each: {_share(publishes, limits['publish_per_s'])}",
            goal,
        ),
        (
            "confirmation mails/s accepted by SMTP, same window",
            f"{phase['mails_per_s']:,.0f}/s (lowest 5 s: {phase['mails_lowest_5s_per_s']:,.0f}/s); "
            + _rest_mailed(phase),
            f"{phase['mails_per_s'] / max(decided, 1e-9):.0%} of decided/s",
            "",
        ),
        ("request → outcome, flat out", _latency(phase["outcome_latency"]), "", ""),
        ("reporting lag after the last outcome, flat out", _lag(phase), "", ""),
        ("largest queue backlogs, flat out: peak (end of window)", _backlog(phase), "", ""),
        (
            "broker work per registration; during flat out",
            f"{per['publishes']:g} publishes, {per['deliveries']:g} deliveries; "
            f"{publishes:,.0f} publishes/s, {deliveries:,.0f} deliveries/s",
            f"{_share(publishes, limits['publish_per_s'])} of publish, "
            f"{_share(deliveries, limits['consume_per_s'])} of consume limit",
            "",
        ),
        (
            "Postgres commits/s during flat out",
            f"{commits:,.0f}/s ({phase['postgres_commits_per_registration']:g} per registration)",
            f"{_share(commits, limits['commits_per_s'][max(limits['commits_per_s'], key=int)])} "
            "of the commit limit",
            "",
        ),
        (
            "CPU during flat out, % of one core (machine: % of all)",
            _cpu(phase["cpu_percent_of_a_core"]),
            "",
            "",
        ),
        ("busy Postgres sessions during flat out (average; wait event)", _sessions(phase), "", ""),
        *_cpu_ms_rows(phase, "flat out"),
    ]


def fixed_rate_rows(phase: dict[str, Any]) -> list[Row]:
    rate, p99 = phase["offered"], phase["outcome_latency"]["p99_ms"]
    met = p99 is not None and p99 < GOAL_P99_MS
    goal = f"p99 < {GOAL_P99_MS:g} ms {_check(met)}" if rate == GOAL_OFFERED else ""
    return [
        (
            f"request published → outcome received, {rate:g}/s offered for {phase['seconds']:g} s",
            _latency(phase["outcome_latency"]),
            f"sent {phase['offered_per_s']:,.0f}/s, decided {phase['decided_per_s']:,.0f}/s, "
            f"mailed {phase['mails_per_s']:,.0f}/s",
            goal,
        ),
        (f"request published → mail accepted by SMTP, {rate:g}/s", _latency(phase["mail_latency"]), "", ""),
        (f"reporting lag after the last outcome, {rate:g}/s", _lag(phase), "", ""),
        (f"largest queue backlogs, {rate:g}/s: peak (end of window)", _backlog(phase), "", ""),
        *_cpu_ms_rows(phase, f"{rate:g}/s"),
    ]


def limit_rows(limits: dict[str, Any]) -> list[Row]:
    rows: list[Row] = [
        (
            f"machine: broker confirmed persistent publishes/s ({limits['message_bytes']} B, quorum queue, "
            "100 unconfirmed)",
            f"{limits['publish_per_s']:,.0f}/s",
            "limit",
            "",
        ),
        ("machine: broker consume + ack/s (prefetch 100)", f"{limits['consume_per_s']:,.0f}/s", "limit", ""),
    ]
    for clients, rate in limits["commits_per_s"].items():
        rows.append(
            (
                f"machine: Postgres commits/s, {clients} connection(s), "
                f"synchronous_commit={limits['synchronous_commit']}, fsync={limits['fsync']}",
                f"{rate:,.0f}/s",
                "limit",
                "",
            )
        )
    return rows


def _sessions(phase: dict[str, Any], top: int = 5) -> str:
    busy: dict[str, float] = phase["busy_db_sessions_avg"]
    return ", ".join(f"{what} {n:g}" for what, n in list(busy.items())[:top]) or "none"


def _cpu_ms_rows(phase: dict[str, Any], name: str) -> list[Row]:
    """CPU ms per registration (absent in results of older runs)."""
    per: dict[str, float] | None = phase.get("cpu_ms_per_registration")
    if not per:
        return []
    parts = ", ".join(f"{CPU_NAMES.get(k, k)} {v:.2f}" for k, v in per.items() if k != "total")
    return [
        (
            f"CPU ms per registration, {name} (phase start until drained, mailed and reported)",
            f"{per['total']:.2f} ms in all: {parts}",
            "",
            "",
        )
    ]


def _cpu(shares: dict[str, float]) -> str:
    parts = [
        f"{CPU_NAMES.get(name, name)} {value:.0f}"
        for name, value in sorted(shares.items(), key=lambda item: -item[1])
        if name not in ("machine", "others")
    ]
    tail = f"; other programs {shares.get('others', 0):.0f}; machine {shares.get('machine', 0):.0f} % busy"
    return ", ".join(parts) + tail


def rows(results: dict[str, Any]) -> list[Row]:
    found: list[Row] = []
    for phase in results["phases"]:
        if phase["offered"] == "flat out":
            found += flat_out_rows(phase, results)
        else:
            found += fixed_rate_rows(phase)
    return found + limit_rows(results["limits"])


HEADER = ("what", "measured", "relative to the machine", "goal")


def render(results: dict[str, Any]) -> Table:
    table = Table(title=title(results), show_lines=True)
    for column in HEADER:
        table.add_column(column, overflow="fold")
    for row in rows(results):
        table.add_row(*row)
    return table


def title(results: dict[str, Any]) -> str:
    machine = results["machine"]
    nice = results.get("options", {}).get("background_nice")
    priority = "services at their default nice levels" if nice is None else f"background nice {nice}"
    return (
        f"qti-net end to end, {results['started_at'][:16].replace('T', ' ')} UTC, {machine['cores']} cores "
        f"shared by broker, database, services and load generator; {priority}"
    )


def markdown(results: dict[str, Any]) -> str:
    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    body = [line(HEADER), line(("---",) * len(HEADER)), *(line(r) for r in rows(results))]
    notes = "".join(f"\n{note}\n" for note in caveats(results))
    return f"{title(results)}\n\n" + "\n".join(body) + "\n" + notes


def caveats(results: dict[str, Any]) -> list[str]:
    """What makes the figures less trustworthy: other programs on the cores, errors in the services."""
    notes = []
    for phase in results["phases"]:
        others = phase["cpu_percent_of_a_core"].get("others", 0.0)
        if others >= NOISY_PERCENT:
            notes.append(f"Other programs used {others:.0f} % of a core during `{phase['phase']}`: noisy.")
    if results["services_log_warnings"]:
        notes.append(
            f"The services logged {results['services_log_warnings']} warnings or errors: "
            f"`{results['services_log']}`."
        )
    for key in ("publish_errors", "duplicate_replies", "unmatched_mails"):
        if results[key]:
            notes.append(f"{key.replace('_', ' ')}: {results[key]}.")
    return notes


def write_results(results: dict[str, Any], folder: Path, stamp: str) -> list[Path]:
    json_path, md_path = folder / f"e2e-{stamp}.json", folder / f"e2e-{stamp}.md"
    json_path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    md_path.write_text(markdown(results))
    return [json_path, md_path]
