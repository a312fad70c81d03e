"""The one clock (nash/search/budget.py): a run's deadline, its shares and the epochs that fit."""
import math
import time

import pytest

from nash.search.budget import (EPOCH_MARGIN, REPORT_EPOCHS, REPORT_SECONDS, RUN_MARGIN_MAX, RUN_MARGIN_SHARE,
                                Budget)


def test_no_budget_is_unlimited():
    b = Budget()
    assert not b.limited and b.left() == math.inf and b.epochs_that_fit(1.0) == math.inf
    assert b.share(0.5) == b and b.share(0.5).deadline is None


def test_a_run_budget_keeps_its_margin_and_a_resume_keeps_its_shares():
    started = 1000.0
    b = Budget.for_run(600.0, started)
    assert b.origin == started and b.deadline == started + 600.0 - min(RUN_MARGIN_SHARE * 600.0, RUN_MARGIN_MAX)
    assert Budget.for_run(3600.0, started).deadline == started + 3600.0 - RUN_MARGIN_MAX
    # resumed 100 s later, having spent 40 s: the deadline and every share stay where they were
    # on the run's clock (origin moved back by the time spent)
    resumed = Budget.for_run(600.0, started + 100.0, spent_before=40.0)
    assert resumed.origin == started + 60.0
    assert resumed.share(0.5).deadline - resumed.origin == pytest.approx(b.share(0.5).deadline - b.origin)
    # a share of a share is counted from the same origin
    assert b.share(0.5).share(0.5).deadline == pytest.approx(b.share(0.25).deadline)


def test_epochs_that_fit_keep_the_report_reserve_and_the_margin():
    b = Budget.from_now(100.0)
    left = b.left()
    n = b.epochs_that_fit(10.0)
    assert n == math.floor((left - REPORT_SECONDS - REPORT_EPOCHS * 10.0) / (10.0 * EPOCH_MARGIN))
    assert b.epochs_that_fit(10.0, also=50.0) < n
    assert 0 < b.epochs_that_fit(10.0, whole=False) - n < 1
    assert Budget(time.time() - 5.0, time.time() - 10.0).epochs_that_fit(1.0) == 0  # past it: none, never below
