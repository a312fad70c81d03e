"""climb.png reads right for a climb of many steps: integer step ticks, an accuracy axis within
[0, 1], and every candidate's every rung drawn."""
from nash.report import climb_figure
from nash.rundir import RunDir


def test_the_climb_plot_shows_every_rung_on_integer_steps(tmp_path):
    run = RunDir.create(tmp_path / "run", {"method": "nash", "config": {}})
    run.event("start", val_acc=0.62, params=1000)
    points = 0
    for step in range(1, 8):
        for rung, alive in enumerate((4, 2, 1)):
            for child in range(alive):
                run.event("child", step=step, rung=rung, child=child, val_acc=min(1.0, 0.6 + 0.06 * step + 0.01 * rung),
                          params=1000 * step + child)
                points += 1
        run.event("step", step=step, val_acc=min(1.0, 0.62 + 0.06 * step), params=1000 * step)
    fig = climb_figure(run)
    acc, params = fig.axes[:2]
    for ax in (acc, params):
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    lo, hi = acc.get_ylim()
    assert 0.0 <= lo < hi <= 1.0
    drawn = sum(len(c.get_offsets()) for c in acc.collections)
    assert drawn == points + 1  # every rung of every candidate, and the start net
    # no candidate sits under the lineage's line: each is left of its step's integer position
    xs = [x for c in acc.collections for x, _ in c.get_offsets()]
    assert sum(1 for x in xs if float(x).is_integer()) == 1  # only the start net's square
