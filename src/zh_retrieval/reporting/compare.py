"""Which queries did fine-tuning help or hurt? Two evaluations' per_query.jsonl compared query by query."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zh_retrieval.core.errors import InputError
from zh_retrieval.core.files import read_jsonl


@dataclass(frozen=True)
class Change:
    query_id: str
    before: float
    after: float
    rank_before: int | None
    rank_after: int | None

    @property
    def delta(self) -> float:
        return self.after - self.before


def read_per_query(eval_dir: Path) -> dict[str, dict]:
    return {row["query_id"]: row for _, row in read_jsonl(eval_dir / "per_query.jsonl")}


def compare(before: dict[str, dict], after: dict[str, dict], metric: str) -> list[Change]:
    """One Change per query of `before`, best improvement first; ties by query id."""
    missing = set(before) ^ set(after)
    if missing:
        raise InputError("per_query.jsonl", f"the two evaluations cover different queries, e.g. {sorted(missing)[0]!r}")
    if before and metric not in next(iter(before.values())):
        raise InputError("per_query.jsonl", f"no metric {metric!r}")
    changes = [Change(q, before[q][metric], after[q][metric], before[q].get("first_relevant_rank"),
                      after[q].get("first_relevant_rank")) for q in before]
    return sorted(changes, key=lambda c: (-c.delta, c.query_id))


def summary(changes: list[Change], tolerance: float = 1e-9) -> dict[str, int]:
    return {
        "improved": sum(c.delta > tolerance for c in changes),
        "unchanged": sum(abs(c.delta) <= tolerance for c in changes),
        "degraded": sum(c.delta < -tolerance for c in changes),
    }
