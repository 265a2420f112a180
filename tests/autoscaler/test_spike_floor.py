"""The blind-window floor of a spike (autoscaler/sim/floor.py): the under-provisioning no causal
policy avoids without standing capacity, checked against the closed form for a linear ramp, and
swell's ramp projection on a generated spike."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoscaler.sim import floor
from autoscaler.sim.bench import Case, held_out_section, run_case, spike_section
from autoscaler.sim.engine import SimParams, resample, run_policy
from autoscaler.sim.generate import generate, spike_onsets
from autoscaler.sim.trace import Trace

TICK = 15.0


def ramp_replay(onset_s: float = 3600.0, total_s: float = 7200.0) -> tuple[np.ndarray, np.ndarray]:
    """Demand 100 until `onset_s`, then 100 x (1 + t / 200 s) for 10 minutes (x4), then flat;
    sampled every tick (so the first sample after the onset is the next tick)."""
    t = np.arange(0.0, total_s, TICK)
    rise = np.clip((t - onset_s) / 600.0, 0.0, 1.0)
    return t, 100.0 * (1.0 + 3.0 * rise)


def closed_form_loss_s(margin: float, end_s: float) -> float:
    """Seconds of relative shortfall on the ramp D = 1 + t/200 (then flat at 4 from 600 s) with
    supply `margin` until `end_s`."""
    d_end = 1.0 + min(end_s, 600.0) / 200.0
    if d_end <= margin:
        return 0.0
    ramp = 200.0 * ((d_end - margin) - margin * math.log(d_end / margin))
    return ramp + max(end_s - 600.0, 0.0) * (1.0 - margin / 4.0)


@pytest.mark.parametrize(
    ("lag", "lead", "margin"),
    [(30.0, 180.0, 1.0), (30.0, 180.0, 1.5), (30.0, 600.0, 1.43), (30.0, 600.0, 2.4), (0.0, 60.0, 1.1)],
    ids=["180s-no-margin", "180s-keda-like", "600s-keda-like", "600s-large", "fast-boot"],
)
def test_floor_matches_the_closed_form_of_a_linear_ramp(lag: float, lead: float, margin: float) -> None:
    t, d = ramp_replay()
    onset = 3600.0 - 1.0  # just before a sample: the next sample is the first to show it
    (w,) = floor.blind_windows(t, d, t, [onset], TICK, lag, lead)
    assert t[w.start] == 3600.0
    assert (w.stop - w.start) * TICK == pytest.approx(lag + lead)
    assert w.pre == pytest.approx(100.0)
    got_s = floor.floor_theta_u(d, [w], margin) / 100.0 * len(t) * TICK
    # Sampled every 15 s, the sum is a left Riemann sum of a rising integrand: short of the
    # integral by less than one tick of the integrand's final value.
    expected = closed_form_loss_s(margin, lag + lead)
    final = max(1.0 - margin / (1.0 + min(lag + lead, 600.0) / 200.0), 0.0)
    assert expected - TICK * final - 1e-9 <= got_s <= expected + 1e-9


def test_margin_needed_inverts_the_floor_and_grows_with_the_lead_time() -> None:
    t, d = ramp_replay()
    w180 = floor.blind_windows(t, d, t, [3599.0], TICK, 30.0, 180.0)
    w600 = floor.blind_windows(t, d, t, [3599.0], TICK, 30.0, 600.0)
    target = floor.floor_theta_u(d, w180, 1.4)
    m = floor.margin_needed(d, w180, target)
    assert m == pytest.approx(1.4, abs=0.01)
    assert floor.margin_needed(d, w600, target) > 2.0  # the whole x4 ramp is blind at 600 s


def test_a_policy_at_its_floor_loses_exactly_the_floor_inside_the_window() -> None:
    t, d = ramp_replay()
    windows = floor.blind_windows(t, d, t, [3599.0], TICK, 30.0, 180.0)
    supply = np.full(len(t), 130.0)
    assert floor.standing_margin(supply, windows) == pytest.approx(1.3)
    assert floor.policy_theta_u_in(d, supply, windows) == pytest.approx(floor.floor_theta_u(d, windows, 1.3))


def test_tracking_cost_bills_the_margin_over_the_level_at_every_tick() -> None:
    d = np.full(240, 100.0)  # one hour at 15 s ticks
    assert floor.tracking_cost(d, 10.0, 1.0, TICK) == pytest.approx(10.0)
    assert floor.tracking_cost(d, 10.0, 1.55, TICK) == pytest.approx(16.0)  # ceil(15.5)
    gappy = d.copy()
    gappy[:120] = np.nan  # gaps are not billed
    assert floor.tracking_cost(gappy, 10.0, 1.0, TICK) == pytest.approx(5.0)


def test_spike_onsets_are_the_onsets_the_generator_used() -> None:
    t, d = generate("spike", days=3, noise=0.0, seed=7)
    for onset in spike_onsets(3, 7):
        i = int(np.searchsorted(t, onset, side="right"))
        assert d[i + 10] > 3.0 * d[i - 1]  # x4 ten minutes after the onset (over a moving daily curve)
        assert d[i - 1] == pytest.approx(d[i - 2], rel=0.02)  # nothing before it


def test_swell_asks_for_the_whole_x4_at_the_first_sample_that_is_a_surge() -> None:
    """Once a spike's rise has lasted a minute, the first sample far above the level is projected
    along the rise since the episode began: swell asks for (nearly) the whole x4 at once, where the
    x2 jump alone, sized from that sample, would need another step a few minutes later."""
    t, d = generate("spike", days=1, noise=0.05, seed=3)
    trace = Trace("spike", t, d)
    params = SimParams(capacity_per_instance=trace.median_demand() / 10, lead_time_s=180.0)
    replay = resample(trace, params)
    onset = spike_onsets(1, 3)[0]
    first = int(np.searchsorted(t, onset, side="right"))
    pre = float(d[first - 15 : first].mean())
    surge_sample = first + int(np.argmax(d[first:] > 1.5 * pre))
    # Seen 30 s after it was taken, plus one 15 s sync.
    i_seen = int(np.searchsorted(replay.t, t[surge_sample])) + 3
    i_before = int(np.searchsorted(replay.t, t[first])) - 1
    run = run_policy("swell", replay, params)
    before = int(run.requested[i_before])
    assert run.requested[i_seen] >= 3.5 * before
    no_ramp = SimParams(
        capacity_per_instance=params.capacity_per_instance,
        lead_time_s=180.0,
        policy_overrides={"swell": {"ramp_projection": False}},
    )
    slow = run_policy("swell", replay, no_ramp)
    assert 2 * before <= slow.requested[i_seen] < 3 * before


def test_the_benchmark_reports_the_floor_of_spike_rows_and_only_of_them() -> None:
    spike = run_case((Case("spike", 0.05, 180.0), 2.0, 0, {}, False))
    f = spike["spike_floor"]
    assert f["spikes"] == 2
    # What falls in the blind windows is part of swell's theta_U, and the target needs more margin
    # than swell stands with (the row fails on theta_U).
    assert 0 < f["swell_in"] <= spike["metrics"]["swell"]["theta_u"]
    assert f["margin_needed"] > f["swell_margin"] > 1.0
    assert f["least_ih_ratio"] > 0
    markdown = "\n".join(spike_section([spike]))
    assert "| spike 5% noise | 180 |" in markdown
    daily = run_case((Case("daily", 0.05, 180.0), 2.0, 0, {}, True))  # as a held-out row: the coarse sweep
    assert daily.get("spike_floor") is None
    held = "\n".join(held_out_section([daily, daily]))
    passes = 2 if daily["passed"] else 0
    assert f"| daily 5% noise | 180 | {passes} of 2 |" in held
