"""The synthetic table's method order against the published real-data order."""
import pytest

from uda_reid.reproduce.ordering import orderings, orderings_markdown
from uda_reid.reproduce.references import Reference
from uda_reid.reproduce.table import Row, table_markdown


def _row(source, target, method, mAP):
    return Row(source, target, method, {"mAP": (mAP, 1.0, 3)}, 0, None)


def _ref(method, ours, mAP, source="market1501", target="dukemtmc"):
    return Reference(method, ours, source, target, {"mAP": mAP},
                     "owner/repo README.md (row)")


REFS = [_ref("direct", "direct", 28.0), _ref("ECN", "ecn", 40.0), _ref("MLT", "mlt", 71.0),
        _ref("MLT again", "mlt", 10.0),  # a second entry: the first one is the table's
        _ref("SpCL", "spcl", 69.0), _ref("other", None, 90.0),
        _ref("ECN", "ecn", 43.0, "dukemtmc", "market1501")]


def test_rank_correlations_against_a_hand_computation():
    # ours orders direct < ecn < spcl < mlt ... except that spcl and mlt are swapped
    rows = [_row("synth-market", "synth-duke", m, v) for m, v in
            (("direct", 30.0), ("ecn", 35.0), ("mlt", 50.0), ("spcl", 55.0),
             ("cluster_contrast", 60.0))]  # no published number: left out
    rows.append(_row("synth-duke", "synth-market", "ecn", 20.0))  # too few methods there
    rows.append(_row("market1501", "dukemtmc", "ecn", 20.0))  # a real pair: not ordered
    (o,) = orderings(rows, REFS)
    assert (o.source, o.target, o.methods) == ("synth-market", "synth-duke",
                                               ("direct", "ecn", "mlt", "spcl"))
    assert o.published == (28.0, 40.0, 71.0, 69.0)
    # one swapped pair out of 4: rho = 1 - 6 * 2 / (4 * 15), tau = (5 - 1) / 6
    assert o.spearman == pytest.approx(0.8) and o.kendall == pytest.approx(4 / 6)
    md = orderings_markdown([o])
    lines = [line for line in md.splitlines() if line.startswith("| ") and "mAP" not in line]
    assert [line.split(" | ")[0] for line in lines] == ["| spcl", "| mlt", "| ecn", "| direct"]
    assert "Spearman's rho +0.80, Kendall's tau +0.67 over 4 methods" in md
    assert "MLT: owner/repo README.md (row)" in md


def test_reversed_order_and_the_table_section():
    rows = [_row("synth-market", "synth-duke", m, v) for m, v in
            (("direct", 60.0), ("ecn", 50.0), ("mlt", 40.0))]
    (o,) = orderings(rows, REFS)
    assert o.spearman == pytest.approx(-1.0) and o.kendall == pytest.approx(-1.0)
    assert "Ordering against the published tables: synth-market → synth-duke against " \
           "market1501 → dukemtmc" in table_markdown(rows, REFS)
    assert orderings(rows, REFS, min_methods=4) == []
