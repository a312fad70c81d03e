"""The budget schedule's plan (nash/search/plan.py): more time buys more steps.

Synthetic timings, no training: the plan is arithmetic on the budget and the measured costs."""
import math

import pytest

from nash.search import plan
from nash.search.plan import halving_rungs, lost_slices, make_plan

# the NASH start net (64, 128, 256) on 32x32x3 inputs
START_MACS, START_PARAMS = 39_520_768, 373_834
CIFAR = dict(iters_per_epoch=45_000 // 128, train_images=45_000)


def steps(seconds, epoch_seconds=60.0, parallel=1, **kw):
    args = {**CIFAR, **kw}
    return make_plan(seconds, epoch_seconds, START_MACS, START_PARAMS, 0.0, n_neigh=8, search_share=0.2,
                     parallel=parallel, **args)


def test_the_papers_budget_at_the_papers_speed_plans_at_least_its_five_steps():
    # the paper trained about 720 start-net epochs in 12 hours: ~60 s an epoch on its GPU
    p = steps(12 * 3600)
    assert p.steps >= 5
    assert p.predicted_final_params > 5 * START_PARAMS  # an order of magnitude, as the paper's 5.7M
    # its arithmetic: every phase at least MIN_PHASE_ITERS steps, the losers within the search share
    assert p.phase_epochs * CIFAR["iters_per_epoch"] >= plan.MIN_PHASE_ITERS
    assert p.final_phase_epochs >= p.phase_epochs
    assert p.final_phase_epochs * CIFAR["iters_per_epoch"] >= plan.MIN_FINAL_ITERS
    assert p.lost_seconds <= 0.2 * 12 * 3600
    seconds = 60.0 * (p.phase_epochs * sum(plan.GROWTH ** j for j in range(p.steps))
                      + p.final_phase_epochs * plan.GROWTH ** p.steps)
    assert seconds + p.lost_seconds == pytest.approx(12 * 3600, rel=1e-9)  # the plan spends its budget
    assert p.lineage_epochs == pytest.approx(p.steps * p.phase_epochs + p.final_phase_epochs)
    assert len(p.positions) == p.steps and all(0 < a < b < 1 for a, b in zip(p.positions, p.positions[1:]))


def test_steps_come_early_and_the_final_network_trains_longest():
    # grow early: each step one minimal phase after the one before, the final network the rest;
    # more time lengthens the last phase, it does not push the first step later
    fmnist = dict(iters_per_epoch=141, train_images=18_000)
    plans = [make_plan(m * 60, 22.0, 30_000_000, 372_682, 0.0, n_neigh=8, search_share=0.2, **fmnist)
             for m in (20, 32, 64)]
    for p in plans:
        assert p.steps >= 1 and p.phase_epochs * 141 >= plan.MIN_PHASE_ITERS - 1e-6
        assert p.phase_epochs * 141 < plan.MIN_PHASE_ITERS + 2 * 141  # the minimum, give or take the rungs
        assert p.positions[0] == pytest.approx(p.phase_epochs / p.lineage_epochs)
        assert p.final_phase_epochs >= p.phase_epochs and p.final_phase_epochs * 141 >= plan.MIN_FINAL_ITERS - 1e-6
    assert plans[0].phase_epochs == plans[-1].phase_epochs
    # from a later point of the cycle the steps sit in what is left of it
    later = make_plan(64 * 60, 22.0, 30_000_000, 372_682, 0.4, n_neigh=8, search_share=0.2, **fmnist)
    assert later.positions[0] == pytest.approx(0.4 + 0.6 * later.phase_epochs / later.lineage_epochs)


@pytest.mark.parametrize("epoch_seconds,data", [(60.0, CIFAR), (10.0, dict(iters_per_epoch=156, train_images=20_000)),
                                                (0.15, dict(iters_per_epoch=11, train_images=1_400))])
def test_planned_steps_never_fall_as_the_budget_grows(epoch_seconds, data):
    budgets = [30 * 1.25 ** i for i in range(60)]  # 30 s to ~8 days
    got = [steps(b, epoch_seconds, **data).steps for b in budgets]
    assert got == sorted(got), got
    if data is not CIFAR:
        return
    assert got[-1] > got[len(got) // 2] > 0  # and they do grow


def test_parallel_slots_buy_more_steps_not_an_early_finish():
    budgets = [600 * 1.5 ** i for i in range(12)]
    one = [steps(b, 10.0, iters_per_epoch=156, train_images=20_000) for b in budgets]
    four = [steps(b, 10.0, parallel=4, iters_per_epoch=156, train_images=20_000) for b in budgets]
    assert all(f.steps >= o.steps for o, f in zip(one, four))
    assert any(f.steps > o.steps for o, f in zip(one, four))
    # with 4 slots a rung of 8 costs 2 slices of wall-clock, not 8
    assert lost_slices([(8, 1), (4, 1), (2, 2)], 4) == 1 and lost_slices([(8, 1), (4, 1), (2, 2)], 1) == 12


def test_the_data_stop_growth():
    # 1,400 images carry 560k parameters: the start net grows by one step at most
    p = steps(10 * 3600, 0.15, iters_per_epoch=11, train_images=1_400)
    assert p.steps == 1
    big = steps(10 * 3600, 0.15, iters_per_epoch=11, train_images=1_400_000)
    assert big.steps > 1
    # the first step is granted once: re-planned after it (the network 1.5x bigger, nearly at
    # the cap), no further step is planned, however much time is left
    grown = make_plan(10 * 3600, 0.15, int(START_MACS * 1.5), int(START_PARAMS * 1.5), 0.3, n_neigh=8,
                      search_share=0.2, iters_per_epoch=11, train_images=1_400, first_step=False)
    assert grown.steps == 0
    # under the cap a re-plan still steps on
    roomy = make_plan(10 * 3600, 0.15, START_MACS, START_PARAMS, 0.3, n_neigh=8, search_share=0.2,
                      iters_per_epoch=11, train_images=1_400_000, first_step=False)
    assert roomy.steps > 1


@pytest.mark.parametrize("limit", ["max_params", "max_macs"])
def test_cost_limits_stop_growth_as_the_data_do(limit):
    # no child is trained over a limit, so the plan does not count on growth past it: at twice
    # the start net's cost one step fits (1.5x), a second (2.25x) does not
    start = START_PARAMS if limit == "max_params" else START_MACS
    free = steps(12 * 3600)
    capped = steps(12 * 3600, **{limit: 2 * start})
    assert free.steps >= 5 and capped.steps == 1
    assert capped.predicted_final_params <= 2 * START_PARAMS or limit == "max_macs"
    assert capped.predicted_final_macs <= 2 * START_MACS or limit == "max_params"
    # the first step is granted even at the limit (the user asked for a search); after it, none
    at_limit = make_plan(12 * 3600, 60.0, START_MACS, START_PARAMS, 0.3, n_neigh=8, search_share=0.2,
                         first_step=False, **{**CIFAR, limit: start})
    assert at_limit.steps == 0
    # and the steps still never fall as the budget grows
    got = [steps(30 * 1.25 ** i, **{limit: 8 * start}).steps for i in range(60)]
    assert got == sorted(got) and 1 < got[-1] < free.steps


def test_the_climbs_plan_takes_its_cost_limits():
    import time

    from nash.search import Budget, ClimbConfig, load_data
    from nash.search.climb import preview_plan
    from nash.search.kit import make_start_net
    kw = dict(data="digits", subset=400, widths=(8, 16), budget=7200.0, device="cpu")
    data = load_data(ClimbConfig(**kw))
    start = make_start_net(ClimbConfig(**kw), data).num_params()
    free = preview_plan(ClimbConfig(**kw), data, Budget.for_run(7200.0, time.time()))
    capped = preview_plan(ClimbConfig(**kw, max_params=int(start * 1.2)), data, Budget.for_run(7200.0, time.time()))
    assert free["steps"] > 1 and free["predicted_final_params"] > 1.2 * start
    assert capped["steps"] == 1 and capped["predicted_final_params"] <= int(start * 1.2)


def test_no_time_no_step_and_the_users_steps_are_kept():
    assert steps(60).steps == 0  # one CIFAR epoch does not leave a step room
    p = steps(2 * 3600, exact_steps=3)
    assert p.steps == 3 and len(p.positions) == 3
    assert steps(12 * 3600, grow=False).steps == 0


def test_a_step_whose_growth_cannot_pay_is_not_planned():
    # Fashion-MNIST 20k on a 2-core CPU: the start net trains an epoch of 141 optimizer steps in
    # ~22 s. Eight minutes hold 21 epochs, less than the phases a step needs (MIN_PHASE_ITERS before
    # it, MIN_FINAL_ITERS of a network 1.5x as dear after it, the losers' slices):
    # no step (a lone child against the parent for one slice used to be squeezed in, and lost
    # its slice); twenty minutes hold one step of 4 candidates, its phases of full length
    fmnist = dict(iters_per_epoch=141, train_images=18_000)
    short = make_plan(8 * 60, 22.0, 30_000_000, 372_682, 0.0, n_neigh=8, search_share=0.2, **fmnist)
    assert short.steps == 0 and short.lineage_epochs == pytest.approx(8 * 60 / 22.0)
    longer = make_plan(20 * 60, 22.0, 30_000_000, 372_682, 0.0, n_neigh=8, search_share=0.2, **fmnist)
    assert longer.steps == 1 and longer.candidates >= plan.MIN_CANDIDATES
    assert longer.phase_epochs * 141 >= plan.MIN_PHASE_ITERS - 1e-6 and longer.final_phase_epochs >= longer.phase_epochs
    assert longer.final_phase_epochs * 141 >= plan.MIN_FINAL_ITERS - 1e-6
    # the user's --steps still makes its steps, however short their phases
    forced = make_plan(8 * 60, 22.0, 30_000_000, 372_682, 0.0, n_neigh=8, search_share=0.2, exact_steps=1, **fmnist)
    assert forced.steps == 1 and forced.phase_epochs * 141 < plan.MIN_PHASE_ITERS


def test_halving_rungs():
    assert halving_rungs(8, 1) == [(8, 1), (4, 1), (2, 2)]
    assert halving_rungs(5, 3) == [(5, 3), (3, 3), (2, 6)]
    assert halving_rungs(1, 1) == []
    assert math.isclose(sum(e for _, e in halving_rungs(4, 2)), 4)


def test_plan_flag_times_the_start_net_prints_the_plan_and_writes_nothing(tmp_path):
    import json
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-m", "nash", "climb", "--plan", "--budget", "2h", "--data", "digits",
                        "--subset", "400", "--widths", "8,16", "--device", "cpu", "--quiet"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    last = json.loads(p.stdout.strip().splitlines()[-1])
    assert {"steps", "lineage_epochs", "predicted_final_macs"} <= set(last)
    assert last["steps"] >= 1 and last["predicted_final_macs"] > last["start_macs"]
    assert list(tmp_path.iterdir()) == []  # no run directory, no checkpoint: only the timing ran
    # without a budget there is nothing to plan: one line, exit 2
    p = subprocess.run([sys.executable, "-m", "nash", "climb", "--plan", "--data", "digits"], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "--budget" in p.stderr


def test_the_plan_learns_the_growth_of_the_winners():
    # before any step the plan counts on plan.GROWTH; after steps, on the winners' measured
    # growth (with the prior worth one step), never past the child cap; kept parents do not count
    from types import SimpleNamespace

    from nash.search.schedules import BudgetSchedule
    sched = BudgetSchedule(SimpleNamespace(cfg=SimpleNamespace(max_growth=2.0)))
    assert sched.expected_growth({"history": []}) == pytest.approx(plan.GROWTH)
    grown = {"history": [{"growth": 1.98}, {"growth": 1.0}]}
    assert sched.expected_growth(grown) == pytest.approx(math.sqrt(plan.GROWTH * 1.98))
    assert sched.expected_growth({"history": [{"growth": 7.0}] * 5}) == 2.0
    tight = BudgetSchedule(SimpleNamespace(cfg=SimpleNamespace(max_growth=1.2)))
    assert tight.expected_growth({"history": []}) == 1.2


def test_the_final_network_keeps_its_floor_when_the_phase_before_a_step_fits(monkeypatch):
    # with steps spaced closer than the final phase's floor (stop 34 measured 1,000 against 2,000),
    # a budget that holds MIN_PHASE_ITERS before a step but not MIN_FINAL_ITERS of the grown
    # network after it plans no step: growth that cannot train is not bought (epochs of 22 s)
    monkeypatch.setattr(plan, "MIN_PHASE_ITERS", 1000)
    monkeypatch.setattr(plan, "MIN_FINAL_ITERS", 2000)
    fmnist = dict(iters_per_epoch=141, train_images=18_000)
    before, after = plan.MIN_PHASE_ITERS / 141, plan.MIN_FINAL_ITERS / 141
    tight = (before + 0.9 * after * plan.GROWTH) * 22.0  # the final phase 10% short, no loser paid for
    tight += 4 * 22.0 * plan.GROWTH  # room for a step of 4 candidates' losing slices

    def planned(seconds):
        return make_plan(seconds, 22.0, 30_000_000, 372_682, 0.0, n_neigh=8, search_share=0.5, **fmnist)
    assert planned(tight).steps == 0
    roomy = planned(3 * tight)
    assert roomy.steps >= 1 and roomy.final_phase_epochs * 141 >= plan.MIN_FINAL_ITERS - 1e-6
    assert roomy.phase_epochs * 141 < plan.MIN_FINAL_ITERS  # the steps themselves come at the closer spacing
    # the floor is what kept the step out: without it the same budget buys one
    monkeypatch.setattr(plan, "MIN_FINAL_ITERS", plan.MIN_PHASE_ITERS)
    assert planned(tight).steps == 1


@pytest.mark.parametrize("minutes", [16, 32, 64, 240, 720])
def test_the_final_network_trains_at_least_half_the_cycle_in_a_plan_and_in_its_replans(minutes):
    # Fashion-MNIST 20k on a 2-core CPU (epochs of 141 optimizer steps in ~22 s): every step sits
    # in the cycle's first FINAL_SHARE, the plan's own and the re-plans' after each step, so a
    # re-plan cannot squeeze in a step the first plan did not hold (stop 33: a second step at
    # 55-61% of the cycle left the final network 14-25 epochs)
    fmnist = dict(iters_per_epoch=141, train_images=18_000)
    seconds, macs, params, u = minutes * 60.0, 30_000_000, 372_682, 0.0
    p = make_plan(seconds, 22.0, macs, params, u, n_neigh=8, search_share=0.2, **fmnist)
    first_count = p.steps
    made = 0
    while p.steps:
        assert p.final_phase_epochs / p.rate >= 0.5 - 1e-9  # FINAL_SHARE, the half promised
        assert p.positions[-1] < 0.5
        # play the first planned step: the lineage trains to it, the step's rungs and losers pass,
        # the winner costs the growth the plan expected
        step_epochs = p.phase_epochs + sum(e for _, e in p.rungs)
        spent = 22.0 * (macs / 30_000_000) * step_epochs + p.lost_seconds / p.steps
        seconds, u = seconds - spent, u + step_epochs / p.rate
        macs, params, made = int(macs * plan.GROWTH), int(params * plan.GROWTH), made + 1
        p = make_plan(seconds, 22.0 * macs / 30_000_000, macs, params, u, n_neigh=8, search_share=0.2,
                      first_step=False, **fmnist)
    assert made <= first_count + 1  # the re-plans keep to the first plan, give or take its rounding
    if minutes >= 32:
        assert made >= 1
    if minutes >= 64:
        assert made >= 2  # more time still buys more steps


def test_a_replan_late_in_the_cycle_plans_no_step():
    # from 55% of the cycle on, no step leaves the final network half the cycle, however much time
    fmnist = dict(iters_per_epoch=141, train_images=18_000)
    assert make_plan(3600.0, 22.0, 30_000_000, 372_682, 0.55, n_neigh=8, search_share=0.2, **fmnist).steps == 0
    assert make_plan(3600.0, 22.0, 30_000_000, 372_682, 0.1, n_neigh=8, search_share=0.2, **fmnist).steps >= 1
