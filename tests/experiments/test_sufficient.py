"""The sufficient-statistics shape: kinds, moments, what counts as bad data, the document's form."""

from __future__ import annotations

import math

import pytest

from squals_action.experiments.sufficient import Mean, Proportion, Ratio, from_json, problem, to_json

VALUES = [3.0, 0.0, 5.5, 2.0, 9.0]
PAIRS = [(1.0, 2.0), (0.0, 1.0), (3.0, 4.0), (2.0, 2.0)]


def _mean(values: list[float]) -> Mean:
    return Mean(n=len(values), total=sum(values), sum_squares=sum(v * v for v in values))


def _ratio(pairs: list[tuple[float, float]]) -> Ratio:
    return Ratio(
        n=len(pairs),
        numerator=sum(x for x, _ in pairs),
        numerator_squares=sum(x * x for x, _ in pairs),
        denominator=sum(y for _, y in pairs),
        denominator_squares=sum(y * y for _, y in pairs),
        cross=sum(x * y for x, y in pairs),
    )


def test_moments_match_the_values_they_summarise() -> None:
    import statistics

    m = _mean(VALUES)
    assert m.mean == pytest.approx(statistics.fmean(VALUES))
    assert m.variance == pytest.approx(statistics.variance(VALUES))
    r = _ratio(PAIRS)
    xs, ys = [x for x, _ in PAIRS], [y for _, y in PAIRS]
    assert r.mean == pytest.approx(sum(xs) / sum(ys))
    assert r.covariance == pytest.approx(statistics.covariance(xs, ys))
    p = Proportion(units=200, converters=30)
    assert p.mean == 0.15
    assert p.variance == pytest.approx(0.15 * 0.85)


@pytest.mark.parametrize(
    ("stats", "why"),
    [
        (Proportion(units=10, converters=math.nan), "converters is NaN"),
        (Proportion(units=math.inf, converters=1), "units is infinite"),
        (Proportion(units=10, converters=-1), "negative converters (-1)"),
        (Proportion(units=-3, converters=0), "negative count of units (-3)"),
        (Proportion(units=10, converters=15), "15 converters above 10 units"),
        (Mean(n=4, total=10, sum_squares=20), "sum of squares 20 cannot belong to 4 values summing to 10"),
        (Mean(n=4, total=10, sum_squares=-1), "negative sum of squares (-1)"),
        (
            Ratio(n=4, numerator=6, numerator_squares=14, denominator=9, denominator_squares=25, cross=40),
            "cross-product 40 cannot belong to these sums of squares",
        ),
        (
            Ratio(n=4, numerator=6, numerator_squares=1, denominator=9, denominator_squares=25, cross=16),
            "numerator: sum of squares 1 cannot belong",
        ),
    ],
)
def test_bad_numbers_are_named(stats: Proportion | Mean | Ratio, why: str) -> None:
    said = problem(stats)
    assert said is not None and said.startswith(why)


def test_good_numbers_pass_and_survive_the_document() -> None:
    for stats in (
        Proportion(units=10, converters=3),
        _mean(VALUES),
        _ratio(PAIRS),
        Mean(n=0, total=0, sum_squares=0),
    ):
        assert problem(stats) is None
        assert from_json(to_json(stats)) == stats
    # a constant value: squares exactly total^2/n, within float slack
    assert problem(_mean([0.1] * 1000)) is None


def test_a_document_with_an_unknown_kind_or_a_missing_number_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown kind of sufficient statistics 'median'"):
        from_json({"kind": "median"})
    with pytest.raises(ValueError, match="mean statistics lack sum_squares"):
        from_json({"kind": "mean", "n": 3, "total": 2})
