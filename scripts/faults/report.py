"""The campaign's table: one row per system and fault kind.

Unavailability of a fault: the longest time any partition of the workload went without
acknowledging a write that was waiting, within the fault's window (from its injection to the
next injection), as `strom verify check --faults` computes it.
"""

from __future__ import annotations

from collections import defaultdict

ANOMALIES = (
    "lost_write", "duplicate", "reorder", "non_monotonic_poll", "unexplained_gap",
    "aborted_read", "torn_transaction", "committed_offset_backwards", "double_ownership",
)  # fmt: skip
SHORT = {
    "lost_write": "lost", "duplicate": "dup", "reorder": "reorder",
    "non_monotonic_poll": "non-mono", "unexplained_gap": "gap", "aborted_read": "aborted read",
    "torn_transaction": "torn txn", "committed_offset_backwards": "offsets back",
    "double_ownership": "double owner",
}  # fmt: skip


# Anomalies of one kind a result keeps as examples; the failed run's directory keeps the whole
# history, and `strom verify check` on it lists them all. (One Kafka run wrote 34,514
# duplicates: listed in full, its result line was 8 MB.)
EXAMPLES_KEPT = 20


def anomaly_counts(result: dict) -> dict[str, int]:
    """How many anomalies of each kind a run's verdict (`strom verify check --json`) holds."""
    verdict = result.get("verdict", {})
    counts = dict.fromkeys(ANOMALIES, 0)
    if "anomaly_counts" in verdict:
        counts.update(verdict["anomaly_counts"])
        return counts
    for anomaly in verdict.get("anomalies", []):
        counts[anomaly["kind"]] = counts.get(anomaly["kind"], 0) + 1
    return counts


def keep_examples(verdict: dict) -> dict:
    """The verdict with every anomaly counted but at most EXAMPLES_KEPT of each kind listed."""
    counts = anomaly_counts({"verdict": verdict})
    kept: list[dict] = []
    listed: dict[str, int] = {}
    for anomaly in verdict.get("anomalies", []):
        listed[anomaly["kind"]] = listed.get(anomaly["kind"], 0) + 1
        if listed[anomaly["kind"]] <= EXAMPLES_KEPT:
            kept.append(anomaly)
    return {**verdict, "anomalies": kept, "anomaly_counts": {k: v for k, v in counts.items() if v}}


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summarize(results: list[dict]) -> list[dict]:
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in results:
        groups[(r["system"], r["kind"])].append(r)
    rows = []
    for (system, kind), runs in sorted(groups.items()):
        unavailable = [
            f["unavailable_ms"]
            for r in runs
            for f in r.get("verdict", {}).get("faults", [])
            if f.get("unavailable_ms") is not None
        ]
        counts = {a: sum(anomaly_counts(r)[a] for r in runs) for a in ANOMALIES}
        row = {
            "system": system,
            "kind": kind,
            "runs": len(runs),
            "faults": sum(r.get("injected", 0) for r in runs),
            "broken_runs": sum(1 for r in runs if "error" in r),
            "not_whole": sum(1 for r in runs if not r.get("recovered", True)),
            # Node processes that ended by themselves after a heal (the campaign starts them again).
            "exits": sum(len(f.get("exited", [])) for r in runs for f in r.get("verdict", {}).get("faults", [])),
            "acked": sum(r.get("verdict", {}).get("stats", {}).get("acks", 0) for r in runs),
            "p50": percentile(unavailable, 50),
            "p99": percentile(unavailable, 99),
            "max": max(unavailable) if unavailable else None,
            **counts,
        }
        row["clean"] = not any(counts.values()) and row["broken_runs"] == 0 and row["not_whole"] == 0
        rows.append(row)
    return rows


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def render(rows: list[dict]) -> str:
    head = ["system", "fault", "faults", "acked", "unavail. p50 ms", "p99 ms", "max ms", "not whole", "exits"]
    head += [SHORT[a] for a in ANOMALIES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    totals = defaultdict(lambda: defaultdict(int))
    for r in rows:
        cells = [r["system"], r["kind"], str(r["faults"]), f"{r['acked']:,}", _ms(r["p50"]), _ms(r["p99"]),
                 _ms(r["max"]), str(r["not_whole"] + r["broken_runs"]), str(r["exits"])]  # fmt: skip
        cells += [str(r[a]) for a in ANOMALIES]
        lines.append("| " + " | ".join(cells) + " |")
        for key in ("faults", "acked", "not_whole", "broken_runs", "exits", *ANOMALIES):
            totals[r["system"]][key] += r[key]
    for system, t in sorted(totals.items()):
        cells = [f"**{system}**", "**all**", str(t["faults"]), f"{t['acked']:,}", "", "", "",
                 str(t["not_whole"] + t["broken_runs"]), str(t["exits"])]  # fmt: skip
        cells += [str(t[a]) for a in ANOMALIES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
