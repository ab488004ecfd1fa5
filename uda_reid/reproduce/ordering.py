"""Does a synthetic table predict the field? The methods of a synthetic pair ranked by our mAP
against the same methods ranked by the published numbers of the real pair it stands for
(synth-market -> synth-duke stands for Market-1501 -> DukeMTMC-reID)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

from scipy import stats

from uda_reid.reproduce.references import Reference

if TYPE_CHECKING:
    from uda_reid.reproduce.table import Row

REAL_COUNTERPART = {"synth-market": "market1501", "synth-duke": "dukemtmc",
                    "synth-msmt": "msmt17"}


@dataclass(frozen=True)
class Ordering:
    """One synthetic pair's methods (those with a published number on the real pair), their
    mAP here and there (percent), and the rank correlations between the two."""
    source: str
    target: str
    methods: Tuple[str, ...]
    ours: Tuple[float, ...]
    published: Tuple[float, ...]
    references: Tuple[Reference, ...]
    spearman: float
    kendall: float


def published_reference(references: Sequence[Reference], method: str, source: str,
                        target: str) -> Optional[Reference]:
    """The first entry compared with our ``method`` on the real pair that has an mAP (the
    entry the real table shows beside that method)."""
    return next((r for r in references if r.ours == method and r.source == source
                 and r.target == target and "mAP" in r.metrics), None)


def orderings(rows: Sequence["Row"], references: Sequence[Reference], min_methods: int = 3
              ) -> List[Ordering]:
    """For every synthetic pair among ``rows`` with at
    least ``min_methods`` methods that have both our mAP and a published one: Spearman's rho
    and Kendall's tau-b (ties averaged) between the two mAP columns."""
    out = []
    pairs = dict.fromkeys((r.source, r.target) for r in rows)
    for source, target in pairs:
        real = (REAL_COUNTERPART.get(source), REAL_COUNTERPART.get(target))
        if None in real:
            continue
        matched = []
        for row in rows:
            if (row.source, row.target) != (source, target) or "mAP" not in row.ours:
                continue
            ref = published_reference(references, row.method, *real)
            if ref is not None:
                matched.append((row.method, row.ours["mAP"][0], ref))
        if len(matched) < min_methods:
            continue
        ours = tuple(m[1] for m in matched)
        published = tuple(m[2].metrics["mAP"] for m in matched)
        out.append(Ordering(source, target, tuple(m[0] for m in matched), ours, published,
                            tuple(m[2] for m in matched),
                            float(stats.spearmanr(ours, published).statistic),
                            float(stats.kendalltau(ours, published).statistic)))
    return out


def orderings_markdown(items: Sequence[Ordering]) -> str:
    """One table per synthetic pair: methods by our mAP, the published mAP and its source,
    then the two correlations."""
    lines: List[str] = []
    for o in items:
        real = f"{REAL_COUNTERPART[o.source]} → {REAL_COUNTERPART[o.target]}"
        lines += ["", f"Ordering against the published tables: {o.source} → {o.target} "
                  f"against {real}", "",
                  f"| method | ours mAP | published mAP ({real}) | published by |",
                  "|---|---|---|---|"]
        order = sorted(range(len(o.methods)), key=lambda i: -o.ours[i])
        lines += [f"| {o.methods[i]} | {o.ours[i]:.1f} | {o.published[i]:.1f} | "
                  f"{o.references[i].method}: {o.references[i].ref} |" for i in order]
        lines += ["", f"Spearman's rho {o.spearman:+.2f}, Kendall's tau {o.kendall:+.2f} "
                  f"over {len(o.methods)} methods."]
    return "\n".join(lines) + ("\n" if lines else "")
