"""Tiers and lanes (issue 15), through the real SDKs against the simulator.

Each request goes out in the cheapest lane that meets its deadline: batch when the
observed (or documented 24 h) batch latency fits, else flex where a buffer is
configured for it, else real time; a stalled batch alerts and, when its requests
have deadlines, is cancelled and its leftovers sent real time exactly once.
"""

from __future__ import annotations

import dataclasses
import time
from decimal import Decimal
from pathlib import Path

import pytest

from batchtop.config import AlertConfig, BufferOverride, Config, RealtimeConfig, TierConfig, parse_config
from batchtop.engine.lanes import BATCH, FLEX, REALTIME, batch_eta, batch_latency, choose_lane, p90
from batchtop.engine.tick import Engine
from batchtop.intake.client import Client, tier_deadline
from batchtop.sim import Simulator
from batchtop.store import Store

from engine_helpers import all_settled, anthropic_lines, close, config, drive, openai_lines, sim, states, tick  # noqa: F401


def lane_counts(store: Store) -> dict[str, int]:
    return dict(store.db.execute("SELECT lane, count(*) FROM realtime_calls WHERE outcome IS NOT 'released' GROUP BY lane").fetchall())


def tiers(store: Store) -> dict[str, str | None]:
    return dict(store.db.execute("SELECT custom_id, tier FROM requests").fetchall())


# -- pure parts -----------------------------------------------------------------------------


def test_lane_choice_is_the_cheapest_that_meets_the_deadline() -> None:
    now = 1000.0
    assert choose_lane(None, now, 86400, flex=False) == BATCH
    assert choose_lane(now + 2 * 86400, now, 86400, flex=False) == BATCH
    assert choose_lane(now + 3600, now, 86400, flex=True) == FLEX
    assert choose_lane(now + 3600, now, 86400, flex=False) == REALTIME
    assert choose_lane(now + 3600, now, 60, flex=True) == BATCH  # history says batches end in a minute
    assert choose_lane(now, now, 60, flex=True) == REALTIME  # 0s: nothing but real time
    assert choose_lane(now - 10, now, 60, flex=True) == REALTIME  # passed
    assert batch_latency([]) == 86400 and batch_latency([10.0, 20.0]) == 86400
    assert batch_latency([float(i) for i in range(1, 11)]) == 9.0 == p90([float(i) for i in range(1, 11)])


def test_eta_from_progress_history_and_stuck() -> None:
    eta = batch_eta(now=100, submitted_at=0, total=100, done=50, history=[], deadline_at=None, stuck_after=None)
    assert eta.eta_at == pytest.approx(200) and not eta.stuck
    eta = batch_eta(now=10, submitted_at=0, total=100, done=0, history=[30.0] * 5, deadline_at=20.0, stuck_after=None)
    assert eta.eta_at == 30 and eta.at_risk
    stuck = batch_eta(now=100, submitted_at=0, total=100, done=0, history=[30.0] * 5, deadline_at=None, stuck_after=None)
    assert stuck.stuck and stuck.eta_at is None and not stuck.at_risk
    assert batch_eta(now=5, submitted_at=0, total=1, done=0, history=[], deadline_at=None, stuck_after=2).stuck


def test_tier_config_defaults_and_sla_wins(tmp_path: Path) -> None:
    cfg = parse_config({"tiers": {"high": "5m"}, "realtime": {"concurrency": 3, "daily_usd": 2}})
    assert cfg.tiers == TierConfig(critical=0.0, high=300.0, normal=3600.0)
    assert cfg.realtime == RealtimeConfig(True, 3, Decimal("2"))
    now = 1_000_000.0
    assert tier_deadline("critical", None, None, now, cfg.tiers) == now
    assert tier_deadline("high", None, None, now, cfg.tiers) == now + 300
    assert tier_deadline("low", None, None, now, cfg.tiers) is None
    assert tier_deadline("normal", "36h", None, now, cfg.tiers) == now + 36 * 3600  # --sla wins
    with pytest.raises(ValueError):
        tier_deadline("urgent", None, None, now, cfg.tiers)


def test_enqueue_cli_tier_is_stored(cli, data_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import json

    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in openai_lines(2)) + "\n")
    before = time.time()
    assert cli("enqueue", str(path), "--tier", "high").code == 0
    with Store(data_dir) as store:
        rows = store.db.execute("SELECT tier, deadline FROM requests").fetchall()
    assert {r[0] for r in rows} == {"high"}
    assert all(before + 59 <= r[1] <= time.time() + 61 for r in rows)


# -- through the engine ---------------------------------------------------------------------


def test_tiers_route_right(sim: Simulator, data_dir: Path) -> None:
    """critical and high go real time (no batch fits a minute), low and untiered by
    batch; normal (1 h) by flex where its buffer is configured for it."""
    with Client(data_dir) as bt:
        bt.enqueue_many(openai_lines(2, "crit"), tier="critical")
        bt.enqueue_many(openai_lines(2, "high"), tier="high")
        bt.enqueue_many(openai_lines(2, "low"), tier="low")
        bt.enqueue_many(openai_lines(2, "none"))
        bt.enqueue_many(openai_lines(2, "norm", model="gpt-4o"), tier="normal")
        bt.enqueue_many(anthropic_lines(2, "acrit"), tier="critical")
    cfg = dataclasses.replace(config(), buffers=(BufferOverride(None, None, "gpt-4o", {}, flex=True),))
    with Store(data_dir) as store:
        engine = Engine(store, cfg)
        try:
            drive(engine, all_settled(store))
        finally:
            close(engine)
        assert states(store) == {"succeeded": 12}
        lanes = dict(store.db.execute(
            "SELECT r.custom_id, c.lane FROM realtime_calls c JOIN requests r ON r.id = c.request_id"
        ).fetchall())
        assert lanes == {
            "crit0": "realtime", "crit1": "realtime", "high0": "realtime", "high1": "realtime",
            "norm0": "flex", "norm1": "flex", "acrit0": "realtime", "acrit1": "realtime",
        }
        batched = {r[0] for r in store.db.execute("SELECT r.custom_id FROM attempts a JOIN requests r ON r.id = a.request_id")}
        assert batched == {"low0", "low1", "none0", "none1"}
        assert tiers(store)["crit0"] == "critical" and tiers(store)["none0"] is None
    assert all(n == 1 for n in sim.realtime_calls.values()) and len(sim.realtime_calls) == 8


def test_history_lets_normal_go_by_batch(sim: Simulator, data_dir: Path) -> None:
    """With batches of the model observed to end within seconds, a 1 h deadline fits a batch."""
    with Store(data_dir) as store:
        engine = Engine(store, config())
        try:
            for i in range(3):
                with Client(data_dir) as bt:
                    bt.enqueue_many(openai_lines(2, f"warm{i}-"))
                drive(engine, all_settled(store))
            with Client(data_dir) as bt:
                bt.enqueue_many(openai_lines(2, "norm"), tier="normal")
            drive(engine, all_settled(store))
        finally:
            close(engine)
        assert lane_counts(store) == {}
    assert not sim.realtime_calls


def test_a_passed_deadline_is_rescued_real_time_and_results_and_savings_see_it(sim: Simulator, data_dir: Path, cli) -> None:  # type: ignore[no-untyped-def]
    import json

    with Client(data_dir) as bt:
        bt.enqueue_many(openai_lines(3, "late"), deadline=time.time() - 5)
    with Store(data_dir) as store:
        engine = Engine(store, config())
        try:
            drive(engine, all_settled(store))
        finally:
            close(engine)
        assert lane_counts(store) == {"realtime": 3}
        assert not store.db.execute("SELECT count(*) FROM batches").fetchone()[0]
    out = cli("results")
    ids = sorted(json.loads(line)["custom_id"] for line in out.out.splitlines())
    assert ids == ["late0", "late1", "late2"]
    doc = json.loads(cli("--once", "--json", "--no-refresh").out)
    (model,) = doc["savings"]["by_model"]
    assert model["realtime_lane"]["requests"] == 3 and model["realtime_lane"]["spent_usd"] > 0
    total = doc["savings"]["total"]
    assert total["realtime_lane_spent_usd"] == pytest.approx(model["realtime_lane"]["spent_usd"])
    assert total["saved_usd"] == pytest.approx(total["realtime_cost_usd"] - total["batch_cost_usd"] - total["realtime_lane_spent_usd"])
    assert total["saved_usd"] == pytest.approx(0, abs=1e-9)  # all at list price: nothing saved


def test_realtime_faults_are_retried_after_retry_after(sim: Simulator, data_dir: Path) -> None:
    sim.config.realtime_fault_rate = 0.5
    with Client(data_dir) as bt:
        bt.enqueue_many(anthropic_lines(6, "f"), tier="critical")
    with Store(data_dir) as store:
        engine = Engine(store, config())
        try:
            drive(engine, all_settled(store))
        finally:
            close(engine)
        assert states(store) == {"succeeded": 6}
    assert sorted(sim.realtime_calls.values()) == [1] * 6
    assert any(r.status in (429, 500) for r in sim.requests(path="/v1/messages"))


def test_flex_refused_falls_back_to_realtime(sim: Simulator, data_dir: Path) -> None:
    sim.config.flex_refusal_rate = 1.0
    with Client(data_dir) as bt:
        bt.enqueue_many(openai_lines(2, "fx"), tier="normal")
    cfg = dataclasses.replace(config(), buffers=(BufferOverride(None, None, None, {}, flex=True),))
    with Store(data_dir) as store:
        engine = Engine(store, cfg)
        try:
            report = drive(engine, all_settled(store))
        finally:
            close(engine)
        assert lane_counts(store) == {"realtime": 2}
        assert report[0].lanes.realtime == 2
    assert sorted(sim.realtime_calls.values()) == [1, 1]


def test_the_daily_spend_cap_holds(sim: Simulator, data_dir: Path) -> None:
    """Each call is estimated before it is claimed (max_tokens 50): the cap leaves
    room for a few; the rest go by batch, and what was spent stays under the cap."""
    cap = Decimal("0.002")  # about 3 calls at their estimate of $0.000525 each
    with Client(data_dir) as bt:
        bt.enqueue_many(openai_lines(20, "cap", model="gpt-4o"), tier="critical")
    cfg = dataclasses.replace(config(), realtime=RealtimeConfig(daily_usd=cap))
    with Store(data_dir) as store:
        engine = Engine(store, cfg)
        try:
            reports = drive(engine, all_settled(store))
        finally:
            close(engine)
        (spent,) = store.db.execute("SELECT sum(cost_usd) FROM realtime_calls WHERE outcome = 'succeeded'").fetchone()
        sent = lane_counts(store).get("realtime", 0)
        assert 0 < sent < 20 and Decimal(str(spent)) <= cap
        assert sum(r.lanes.capped for r in reports) >= 20 - sent
        assert states(store) == {"succeeded": 20}  # the rest went by batch
    assert len(sim.realtime_calls) == sent


def _stalled_batch(sim: Simulator, data_dir: Path, **enqueue: object) -> tuple[Store, Engine]:
    sim.config.stall = True
    with Client(data_dir) as bt:
        bt.enqueue_many(openai_lines(4, "st"), **enqueue)  # type: ignore[arg-type]
    cfg = dataclasses.replace(config(), alerts=AlertConfig(stuck_after=0.5))
    store = Store(data_dir)
    engine = Engine(store, cfg)
    tick(engine)
    assert store.db.execute("SELECT count(*) FROM batches").fetchone()[0] == 1
    sim.config.stall = False
    time.sleep(0.6)
    return store, engine


def _alerts(store: Store) -> set[str]:
    from batchtop.store.alerts import engine_alerts

    return {a.kind for a in engine_alerts(store.db)}


def test_a_stalled_batch_with_deadlines_is_cancelled_and_its_leftovers_go_real_time_once(sim: Simulator, data_dir: Path) -> None:
    store, engine = _stalled_batch(sim, data_dir, sla="48h")
    try:
        report = tick(engine)
        assert {"stuck_batch", "deadline_risk"} <= _alerts(store)
        assert report.lanes.rescued
        drive(engine, all_settled(store))
        assert states(store) == {"succeeded": 4}
        (status,) = store.db.execute("SELECT status FROM batches").fetchone()
        assert status == "cancelled"
        assert lane_counts(store) == {"realtime": 4}
        for _ in range(3):
            tick(engine)
        assert "stuck_batch" not in _alerts(store)
    finally:
        close(engine)
        store.close()
    assert sorted(sim.realtime_calls.values()) == [1, 1, 1, 1]


def test_a_stalled_batch_without_deadlines_only_alerts(sim: Simulator, data_dir: Path) -> None:
    store, engine = _stalled_batch(sim, data_dir)
    try:
        for _ in range(3):
            report = tick(engine)
        assert "stuck_batch" in _alerts(store) and "deadline_risk" not in _alerts(store)
        assert not report.lanes.rescued
        (status, cancel) = store.db.execute("SELECT status, cancel_requested_at FROM batches").fetchone()
        assert status != "cancelled" and cancel is None
        assert lane_counts(store) == {}
    finally:
        close(engine)
        store.close()
    assert not sim.realtime_calls


def test_rescue_off_sends_everything_by_batch(sim: Simulator, data_dir: Path) -> None:
    with Client(data_dir) as bt:
        bt.enqueue_many(openai_lines(2, "c"), tier="critical")
    cfg = dataclasses.replace(config(), realtime=RealtimeConfig(rescue=False))
    with Store(data_dir) as store:
        engine = Engine(store, cfg)
        try:
            drive(engine, all_settled(store))
        finally:
            close(engine)
        assert lane_counts(store) == {}
    assert not sim.realtime_calls


def test_config_keys_are_checked() -> None:
    from batchtop.config import ConfigError

    for bad in ({"tiers": {"urgent": "1m"}}, {"realtime": {"rescue": "yes"}}, {"realtime": {"concurrency": 0}},
                {"realtime": {"daily_usd": -1}}, {"buffers": [{"flex": 1}]}, {"alerts": {"stuck_after": "soon"}}):
        with pytest.raises(ConfigError):
            parse_config(bad)
    assert Config().realtime.rescue is True


def test_status_shows_eta_deadline_and_lanes(sim: Simulator, data_dir: Path, cli) -> None:  # type: ignore[no-untyped-def]
    """An in-flight batch has an ETA and its earliest deadline; the lanes line counts
    what went real time, at its full price."""
    import json

    from batchtop.views.status import collect

    sim.config.stall = True
    with Client(data_dir) as bt:
        bt.enqueue_many(openai_lines(2, "slow"), sla="48h")
        bt.enqueue_many(openai_lines(2, "now"), tier="critical")
    with Store(data_dir) as store:
        engine = Engine(store, config())
        try:
            tick(engine)
        finally:
            close(engine)
    doc = json.loads(cli("--once", "--json", "--no-refresh").out)
    (batch,) = doc["batches"]
    assert doc["buffers"] == []  # both went: one by batch, one real time
    assert batch["deadline_at"] is not None and batch["eta_at"] is not None
    assert batch["eta_at"] < batch["deadline_at"]  # 24 h worst case, 48 h deadline: no risk
    assert doc["lanes"]["realtime"] == 2 and doc["lanes"]["batch"] == 0
    with Store(data_dir) as store:
        typed = collect(store.db, config(), time.time())
    line = typed.lanes.line()
    assert line.startswith("batch 0 · flex 0 · real time 2 ($") and line.endswith(" at full price)")
    from rich.text import Text

    from batchtop.tui.rows import batch_rows, header_lines

    (row,) = batch_rows(typed.batches, time.time())
    assert row[1][3].plain.startswith("23h")  # the ETA column: in about 24 h
    assert "real time 2" in header_lines(typed, time.time(), Text("engine")).plain


def test_dead_letters_retried_real_time_once_after_asking(sim: Simulator, data_dir: Path, cli) -> None:  # type: ignore[no-untyped-def]
    import json

    sim.config.scripted_errors = {"d0": "invalid_request", "d1": "invalid_request"}
    with Client(data_dir) as bt:
        bt.enqueue_many(openai_lines(2, "d"))
    with Store(data_dir) as store:
        engine = Engine(store, config())
        try:
            drive(engine, all_settled(store))
        finally:
            close(engine)
        assert states(store) == {"dead": 2}
    no = cli("dead-letters", "--retry-realtime", stdin="n\n")
    assert no.code == 0 and "about $" in no.err and "not retried" in no.err
    assert not sim.realtime_calls
    yes = cli("dead-letters", "--retry-realtime", "--yes")
    assert yes.code == 0, yes.err
    assert "2 succeeded" in yes.out
    with Store(data_dir) as store:
        assert states(store) == {"succeeded": 2}
    assert sorted(sim.realtime_calls.values()) == [1, 1]
    assert json.loads(cli("dead-letters", "--json").out) == []
    assert cli("dead-letters", "--retry-realtime", "--yes").code == 0  # nothing left: nothing sent
    assert sorted(sim.realtime_calls.values()) == [1, 1]


def test_report_totals_count_the_lanes(sim: Simulator, data_dir: Path, cli) -> None:  # type: ignore[no-untyped-def]
    import json

    with Client(data_dir) as bt:
        bt.enqueue_many(openai_lines(3, "rep"), tier="critical")
        bt.enqueue_many(openai_lines(3, "bat"))
    with Store(data_dir) as store:
        engine = Engine(store, config())
        try:
            drive(engine, all_settled(store))
        finally:
            close(engine)
    doc = json.loads(cli("report", "--json").out)
    totals = doc["totals"]
    assert totals["requests_succeeded"] == 6
    assert totals["realtime_lane_spent_usd"] > 0
    assert totals["saved_usd"] == pytest.approx(
        totals["realtime_cost_usd"] - totals["batch_cost_usd"] - totals["realtime_lane_spent_usd"], abs=3e-6
    )  # each figure is rounded to 1e-6
    (model,) = doc["by_model"]
    assert model["realtime_lane"]["requests"] == 3
    later = json.loads(cli("report", "--json", "--since", "2099-01-01T00:00:00Z").out)["totals"]
    assert later["realtime_lane_spent_usd"] == 0
    # the days add up to the totals, real-time calls placed by their own end time
    (day,) = doc["by_day"]
    assert day["requests_succeeded"] == totals["requests_succeeded"]
    for key in ("batch_cost_usd", "realtime_cost_usd", "saved_usd"):
        assert day[key] == pytest.approx(totals[key], abs=3e-6), key


def test_a_batch_whose_progress_will_miss_the_deadline_is_rescued(sim: Simulator, data_dir: Path) -> None:
    """History says batches end in a blink, so a 6 s deadline goes by batch; this one
    crawls (0.5 s a request), its ETA from progress passes the deadline: it is
    cancelled, what finished stays, the rest goes real time once."""
    with Store(data_dir) as store:
        engine = Engine(store, config())
        try:
            for i in range(3):
                with Client(data_dir) as bt:
                    bt.enqueue_many(openai_lines(2, f"warm{i}-"))
                drive(engine, all_settled(store))
            sim.config.per_request_s = 0.5
            with Client(data_dir) as bt:
                bt.enqueue_many(openai_lines(20, "slow"), sla="6s")
            tick(engine)
            assert not lane_counts(store)  # it went by batch
            time.sleep(1.6)
            report = tick(engine)
            assert report.lanes.rescued and "deadline_risk" in _alerts(store)
            drive(engine, all_settled(store))
        finally:
            close(engine)
        by_batch = store.db.execute(
            "SELECT count(*) FROM attempts a JOIN requests r ON r.id = a.request_id"
            " WHERE r.custom_id LIKE 'slow%' AND a.outcome = 'succeeded'"
        ).fetchone()[0]
        assert 0 < by_batch < 20
        assert lane_counts(store) == {"realtime": 20 - by_batch}
        assert states(store) == {"succeeded": 26}
        assert "deadline_risk" not in _alerts(store)
    assert sorted(sim.realtime_calls.values()) == [1] * (20 - by_batch)


def test_once_text_shows_the_lanes_line(sim: Simulator, data_dir: Path, cli) -> None:  # type: ignore[no-untyped-def]
    with Client(data_dir) as bt:
        bt.enqueue_many(openai_lines(2, "t"), tier="critical")
    with Store(data_dir) as store:
        engine = Engine(store, config())
        try:
            drive(engine, all_settled(store))
        finally:
            close(engine)
    out = cli("--once", "--no-refresh").out
    assert "LANES  batch 0 · flex 0 · real time 2 ($" in out


def test_buffers_show_the_tier_behind_their_earliest_deadline(data_dir: Path, cli) -> None:  # type: ignore[no-untyped-def]
    import json

    from batchtop.tui.rows import buffer_rows

    with Client(data_dir) as bt:
        bt.enqueue_many(openai_lines(2, "l"), tier="low")
        bt.enqueue_many(openai_lines(1, "h"), tier="high")
    doc = json.loads(cli("--once", "--json", "--no-refresh").out)
    (buf,) = doc["buffers"]
    assert buf["deadline_tier"] == "high" and buf["earliest_deadline"] is not None
    from batchtop.views.status import collect

    with Store(data_dir) as store:
        typed = collect(store.db, config(), time.time())
    (row,) = buffer_rows(typed, time.time())
    assert row[1][4].plain.endswith("(high)")
