"""Budget: refuses at once when spent (busy: retry), says TooLarge for a take over the whole limit (never
retry), and cuts a request into parts that each fit."""

from __future__ import annotations

import pytest

from facerec.budget import Budget
from facerec.errors import Overloaded, TooLarge


def test_a_take_over_the_whole_limit_is_too_large_even_when_nothing_is_held() -> None:
    budget = Budget(100, "pixels in flight")
    with pytest.raises(TooLarge, match="too large"):
        with budget.take(101):
            pass
    assert budget.held == 0


def test_a_take_that_would_fit_later_is_busy_not_too_large() -> None:
    budget = Budget(100, "pixels in flight")
    with budget.take(60):
        with pytest.raises(Overloaded, match="try again later") as caught:
            with budget.take(50):
                pass
        assert not isinstance(caught.value, TooLarge)
    with budget.take(100):
        assert budget.held == 100
    assert budget.held == 0


@pytest.mark.parametrize(
    ("units", "parts"),
    [
        ([], []),
        ([40, 40, 40, 40], [[0, 1], [2, 3]]),
        ([100, 1], [[0], [1]]),
        ([30, 150, 30, 30], [[0], [1], [2, 3]]),
        ([0, 0, 100, 0], [[0, 1, 2, 3]]),
    ],
)
def test_parts_keep_the_order_and_each_fits_unless_one_item_alone_is_over(units, parts) -> None:
    assert Budget(100, "pixels").parts(units) == parts
