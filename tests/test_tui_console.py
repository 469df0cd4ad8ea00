"""The console as an operator lives in it: a selection that stays in view, one focus
model, sorting, a search over the whole store, money that adds up as shown, texts
that say what really happens, and provider text that is only ever data."""

# ruff: noqa: F811  (pytest fixtures imported from test_tui are parameters here)
from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.message import Message

from batchtop.config import Config, EngineConfig
from batchtop.sim import SimConfig, Simulator
from batchtop.timefmt import parse_time
from batchtop.tui import rows
from batchtop.tui.messages import ActionDone
from batchtop.tui.screens.confirm import ConfirmScreen
from batchtop.tui.screens.help import HelpScreen
from batchtop.tui.widgets.live_table import LiveTable
from batchtop.views.status_model import Alert, BatchCounts, BatchStatus, ModelSavings, Savings, SavingsTotal, Status
from test_tui import (  # noqa: F401 (fixtures)
    MANUAL,
    SIZE,
    anyio_backend,
    console,
    db,
    enqueue,
    ingest,
    no_cursor_blink,
    select,
    settle,
    sim,
    slow_sim,
    start_sim,
    submit_all,
    table,
)

from conftest import anthropic_line, openai_line

AUTO = Config(engine=EngineConfig(auto_resubmit=True, max_attempts=3))
NOW = parse_time("2026-11-25T10:00:00Z")


class OneTable(App[None]):
    CSS = "LiveTable { height: 8; }"

    def compose(self) -> ComposeResult:
        yield LiveTable(("name", "n"), id="t")


def numbered(prefix: str, n: int) -> list[rows.Row]:
    return [(f"{prefix}{i}", (f"{prefix}{i}", str(i))) for i in range(n)]


# -- 2. the selection stays in view -----------------------------------------------------
@pytest.mark.anyio
async def test_selection_stays_on_its_line_when_rows_arrive_above() -> None:
    app = OneTable()
    async with app.run_test(size=(60, 20)) as pilot:
        t = app.query_one(LiveTable)
        old = numbered("r", 20)
        t.sync(old)
        await pilot.pause()
        t.move_cursor(row=3)
        await pilot.pause()
        line = t.cursor_row - int(t.scroll_y)
        t.sync(numbered("new", 30) + old)  # 30 batches arrive above the selected one
        await pilot.pause()
        await pilot.pause()
        assert t.selected_key == "r3"
        assert t.cursor_row == 33
        assert t.cursor_row - int(t.scroll_y) == line, "the view did not follow the selection"


@pytest.mark.anyio
async def test_home_end_g_G_page_keys_move_the_selection() -> None:
    app = OneTable()
    async with app.run_test(size=(60, 20)) as pilot:
        t = app.query_one(LiveTable)
        t.sync(numbered("r", 40))
        t.focus()
        await pilot.pause()
        await pilot.press("G")
        assert t.cursor_row == 39
        await pilot.press("g")
        assert t.cursor_row == 0
        await pilot.press("end")
        assert t.cursor_row == 39
        await pilot.press("home")
        assert t.cursor_row == 0
        await pilot.press("pagedown")
        assert t.cursor_row > 3
        await pilot.press("pageup")
        assert t.cursor_row == 0


def _batch(i: str, status: str, ended: bool, cancel_requested: bool = False) -> BatchStatus:
    return BatchStatus(
        id=i, provider="openai", model="gpt-4o-mini", status=status, total=10, succeeded=10 if ended else 2,
        failed=0, created_at=parse_time("2026-11-25T09:00:00Z"),
        ended_at=parse_time("2026-11-25T09:30:00Z") if ended else None,
        expires_at=parse_time("2026-11-26T09:00:00Z"), ingested=ended, cancel_requested=cancel_requested,
    )


def test_in_flight_batches_list_first_and_the_title_counts_the_store() -> None:
    doc = Status(
        NOW,
        batches=(_batch("b_done", "completed", True), _batch("b_live", "in_progress", False)),
        batch_counts=BatchCounts(in_flight=1, ended=412),
    )
    assert [k for k, _ in rows.batch_rows(doc.batches, NOW)] == ["b_live", "b_done"]
    assert rows.batches_title(doc, 2, 2) == "1 in flight · 1 of 412 ended"
    assert rows.batches_title(doc, 1, 2) == "1 match · 1 in flight · 1 of 412 ended"


@pytest.mark.anyio
@pytest.mark.slow  # several seconds: in the slow tier, which .ci/run runs after
async def test_slash_searches_every_batch_in_the_store(data_dir: Path, sim: Simulator) -> None:
    """52 ended batches: the document lists the 50 most recent; `/` still finds the rest."""
    enqueue(data_dir, [openai_line(f"m{i}", model=f"gpt-test-{i:02d}") for i in range(52)])
    app = console(data_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        ids = await submit_all(pilot, sim)
        await ingest(pilot)
        listed = {k.value for k in table(app, "batches").rows}
        assert len(ids) == 52 and len(listed) == 50
        (missing, *_) = sorted(set(ids) - listed)
        assert "0 in flight · 50 of 52 ended" in table(app, "batches").border_title
        await pilot.press("slash", *missing)
        await settle(pilot)
        assert [k.value for k in table(app, "batches").rows] == [missing]
        assert "1 more found in the store" in table(app, "batches").border_title
        await pilot.press("enter")  # keep the search; the found batch is selectable and inspectable
        select(app, "batches", missing)
        await pilot.press("enter")
        await settle(pilot)
        assert missing in str(app.screen.query_one("#inspect-title").render())


# -- 3. one focus model -----------------------------------------------------------------
@pytest.mark.anyio
async def test_keys_act_on_the_focused_table_and_the_footer_names_the_row(data_dir: Path, slow_sim: Simulator) -> None:
    enqueue(data_dir, [openai_line("b1")])
    seen: list[Message] = []
    app = console(data_dir)
    async with app.run_test(size=SIZE, message_hook=seen.append) as pilot:
        await settle(pilot)
        (batch_id,) = await submit_all(pilot, slow_sim)
        enqueue(data_dir, [anthropic_line("q1")])
        app.refresh_status()
        await settle(pilot)
        buffer = "anthropic:/v1/messages:claude-sonnet-4-20250514"
        assert [w.id for w in app.screen.focus_chain] == ["buffers", "batches", "savings"]  # Tab: only the tables

        select(app, "buffers", buffer)
        await pilot.pause()
        keys = {b.key: b.description for _, b, _, _ in app.screen.active_bindings.values()}
        assert "r" not in keys and "c" not in keys  # they act on batches: not offered here
        assert keys["f"] == f"Flush {rows.middle(buffer, 16)}"
        await pilot.press("c")  # acts on the focused table only: no dialog for a batch not selected
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmScreen)
        with db(data_dir) as conn:
            assert conn.execute("SELECT count(*) FROM batches WHERE cancel_requested_at IS NOT NULL").fetchone() == (0,)

        select(app, "batches", batch_id)
        await pilot.pause()
        keys = {b.key: b.description for _, b, _, _ in app.screen.active_bindings.values()}
        assert "f" not in keys
        assert keys["r"] == f"Resubmit {rows.middle(batch_id, 16)}"
        assert keys["c"] == "Cancel"  # the row is named once
        assert f"Resubmit {rows.middle(batch_id, 16)}" in app.export_screenshot().replace("&#160;", " ")
        assert app.screen.query_one("#batches").has_focus
        cursor = {name: table(app, name).get_component_rich_style("datatable--cursor").bgcolor for name in ("buffers", "batches")}
        assert cursor["buffers"] != cursor["batches"]  # only the focused table's cursor at full strength


@pytest.mark.anyio
async def test_help_lists_the_navigation_keys_and_the_palette_has_one_quit(data_dir: Path) -> None:
    app = console(data_dir, engine=False)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = app.export_screenshot().replace("&#160;", " ")
        for key in ("tab", "pgup / pgdn", "home g / end G", "s / S", "Sort the table"):
            assert key in text, key
        await pilot.press("escape")
        system = [c.title for c in app.get_system_commands(app.screen)]
        assert "Quit" not in system  # the console's own Quit (q) is the one in the palette


# -- 4. sorting --------------------------------------------------------------------------
@pytest.mark.anyio
async def test_sort_by_key_and_by_clicking_the_header() -> None:
    app = OneTable()
    async with app.run_test(size=(60, 20)) as pilot:
        t = app.query_one(LiveTable)
        t.sync([("a", ("zeta", "10")), ("b", ("alpha", "9")), ("c", ("mid", "100"))])
        t.focus()
        await pilot.pause()
        await pilot.press("s", "s")  # next column, twice: by n
        assert [r.key.value for r in t.ordered_rows] == ["b", "a", "c"]  # 9 < 10 < 100: by value, not text
        assert str(t.columns[next(k for k in t.columns if k.value == "n")].label) == "n ▲"
        await pilot.press("S")
        assert [r.key.value for r in t.ordered_rows] == ["c", "a", "b"]
        assert str(t.columns[next(k for k in t.columns if k.value == "n")].label) == "n ▼"
        await pilot.click(LiveTable, offset=(2, 0))  # the header of "name"
        await pilot.pause()
        assert t.sort_column == "name" and not t.sort_reverse
        assert [r.key.value for r in t.ordered_rows] == ["b", "c", "a"]
        t.sync([("d", ("beta", "1")), ("a", ("zeta", "10")), ("b", ("alpha", "9")), ("c", ("mid", "100"))])
        await pilot.pause()
        assert [r.key.value for r in t.ordered_rows] == ["b", "d", "c", "a"]  # a refresh keeps the sort


# -- 5. money that adds up ---------------------------------------------------------------
def _money(text: str) -> Decimal:
    return Decimal(text.replace("$", "").replace(",", ""))


def test_savings_rows_and_header_add_up_as_displayed() -> None:
    def m(model: str, batch: float, realtime: float) -> ModelSavings:
        return ModelSavings(
            provider="openai", model=model, family=None, requests_succeeded=10, attempts=10, input_tokens=0,
            cached_input_tokens=0, cache_creation_input_tokens=0, cache_creation_1h_input_tokens=0, output_tokens=0,
            batch_cost_usd=batch, realtime_cost_usd=realtime, resubmission_cost_usd=0.0, saved_usd=realtime - batch,
            saved_pct=50.0, first_pass_success_rate=0.9, break_even_first_pass_rate=0.5, price_known=True, warning=None,
        )

    models = (m("a", 0.089514, 0.179027), m("b", 0.114724, 0.229449), m("c", 0.009368, 0.018736), m("d", 0.019274, 0.038548))
    total = SavingsTotal(batch_cost_usd=0.23288, realtime_cost_usd=0.46576, saved_usd=0.23288, saved_pct=50.0,
                         resubmission_cost_usd=0.0, realtime_lane_spent_usd=0.0, requests_succeeded=40,
                         first_pass_success_rate=0.84, complete=True)
    doc = Status(NOW, savings=Savings(models, total))
    table_rows = [[str(c) for c in cells] for _, cells in rows.savings_rows(doc)]
    *body, last = table_rows
    saved, batch, realtime = (rows.SAVINGS_COLUMNS.index(c) for c in ("saved $", "batch $", "real-time $"))
    for col in (saved, batch, realtime):
        assert sum(_money(r[col]) for r in body) == _money(last[col]), col
    for r in table_rows:
        assert _money(r[batch]) + _money(r[saved]) == _money(r[realtime]), r  # batch + saved = real-time
    assert len({len(r[c].split(".")[1]) for r in table_rows for c in (saved, batch, realtime)}) == 1  # one precision
    header = rows.header_lines(doc, NOW, rows.Text("engine off")).plain
    shown = re.search(r"saved (\$[\d.,]+) of (\$[\d.,]+)", header)
    assert shown is not None and shown.groups() == (last[saved], last[realtime])



def test_real_time_spend_alone_is_shown_at_a_precision_that_shows_it() -> None:
    """A model served only by the real-time lane: nothing by batch, nothing saved, what
    real time spent is the whole real-time equivalent, and the header shows it."""
    from batchtop.pricing.savings import RealtimeLane

    model = ModelSavings(
        provider="openai", model="gpt-4o-mini", family=None, requests_succeeded=5, attempts=0, input_tokens=0,
        cached_input_tokens=0, cache_creation_input_tokens=0, cache_creation_1h_input_tokens=0, output_tokens=0,
        batch_cost_usd=0.0, realtime_cost_usd=0.000312, resubmission_cost_usd=0.0, saved_usd=0.0, saved_pct=0.0,
        first_pass_success_rate=None, break_even_first_pass_rate=None, price_known=True, warning=None,
        realtime_lane=RealtimeLane(5, 0.000312),
    )
    total = SavingsTotal(batch_cost_usd=0.0, realtime_cost_usd=0.000312, saved_usd=0.0, saved_pct=0.0,
                         resubmission_cost_usd=0.0, realtime_lane_spent_usd=0.000312, requests_succeeded=5,
                         first_pass_success_rate=None, complete=True)
    doc = Status(NOW, savings=Savings((model,), total))
    header = rows.header_lines(doc, NOW, rows.Text("engine off")).plain
    assert "of $0.0003 " in header, header
    (_, cells), _ = rows.savings_rows(doc)
    assert str(cells[rows.SAVINGS_COLUMNS.index("real-time $")]) == "$0.0003"

# -- 6. texts that say what happens -------------------------------------------------------
@pytest.mark.anyio
@pytest.mark.parametrize(("config", "says"), [(AUTO, "queued again automatically"), (MANUAL, "r on this batch resubmits")])
async def test_cancel_dialog_says_what_becomes_of_unfinished_requests(
    data_dir: Path, slow_sim: Simulator, config: Config, says: str
) -> None:
    enqueue(data_dir, [openai_line(f"c{i}") for i in range(10)])
    app = console(data_dir, config)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        (batch_id,) = await submit_all(pilot, slow_sim)
        select(app, "batches", batch_id)
        await pilot.press("c")
        await settle(pilot)
        body = " ".join(str(app.screen.query_one("#dialog-body").render()).split())
        assert says in body
        await pilot.press("y")
        await settle(pilot)
        await ingest(pilot)  # the provider has stopped it: results come back
        await ingest(pilot)
        status = str(table(app, "batches").get_cell(batch_id, "status"))
        progress = str(table(app, "batches").get_cell(batch_id, "progress"))
        assert status == "cancelled"
        assert "⊘10 cancelled" in progress and "✗" not in progress  # not done is not failed


def test_cancel_marker_only_while_the_batch_runs() -> None:
    batches = [_batch("b1", "completed", True, cancel_requested=True),
               _batch("b2", "in_progress", False, cancel_requested=True)]
    cells = {k: str(c[rows.BATCH_COLUMNS.index("status")]) for k, c in rows.batch_rows(batches, NOW)}
    assert cells == {"b1": "completed", "b2": "in_progress ⊘cancel"}


@pytest.fixture
def flaky_sim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Simulator]:
    """Every request fails its first attempt and succeeds its second."""
    s = start_sim(monkeypatch, SimConfig(first_try_failure_rate=1.0))
    yield s
    s.stop()


@pytest.mark.anyio
async def test_r_on_an_automatically_retried_batch_says_so(data_dir: Path, flaky_sim: Simulator) -> None:
    enqueue(data_dir, [openai_line(f"t{i}") for i in range(9)])
    seen: list[Message] = []
    app = console(data_dir, AUTO)
    async with app.run_test(size=SIZE, message_hook=seen.append) as pilot:
        await settle(pilot)
        (first,) = await submit_all(pilot, flaky_sim)
        await ingest(pilot)  # 9 failed: the same tick sends them again (engine.retry_delay 0s)
        assert len(flaky_sim.batches()) == 2
        await ingest(pilot)  # the retry's results
        select(app, "batches", first)
        await pilot.press("r")
        await settle(pilot)
        done = [m for m in seen if isinstance(m, ActionDone)]
        assert done[-1].text == f"{first}: 9 failed, all resubmitted automatically: 9 succeeded"
        assert len(flaky_sim.batches()) == 2  # nothing sent again


# -- 8. first run --------------------------------------------------------------------------
@pytest.mark.anyio
async def test_an_empty_data_dir_shows_how_to_start_and_no_key(data_dir: Path) -> None:
    app = console(data_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        welcome = app.screen.query_one("#welcome")
        assert welcome.display
        text = str(welcome.render())
        assert "batchtop enqueue" in text and "batchtop demo" in text
        header = str(app.screen.query_one("#header").render())
        assert "openai no key (set OPENAI_API_KEY)" in header
        assert "anthropic no key (set ANTHROPIC_API_KEY)" in header
        assert " ok" not in header


def test_no_parenthesised_plurals_in_the_console() -> None:
    doc = Status(
        NOW,
        alerts=(
            Alert("dead_letters", "1 request(s) used up their attempts"),
            Alert("unknown_submissions", "1 submission(s) could not be matched"),
        ),
        dead_letters=1, unknown_submissions=1, anomalies=1,
        savings=Savings((), SavingsTotal(None, None, None, None, None, None, 0, None, True)),
    )
    shown = rows.header_lines(doc, NOW, rows.Text("engine off")).plain + rows.problems(doc, NOW).plain
    assert "(s)" not in shown and "1 dead letter " in shown and "1 anomaly " in shown


# -- 9. provider text is data --------------------------------------------------------------
HOSTILE = "boom \x1b]0;pwned\x07 \x1b]52;c;aGVsbG8=\x1b\\ \x1b[2J [/] [bold red]x"


@pytest.mark.anyio
async def test_markup_in_a_model_name_and_escapes_in_an_error_are_shown_as_text(
    data_dir: Path, sim: Simulator
) -> None:
    enqueue(data_dir, [openai_line("m1", model="gpt-4o-mini[/]")])
    app = console(data_dir)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        (batch_id,) = await submit_all(pilot, sim)
        await ingest(pilot)
        assert str(table(app, "batches").get_cell(batch_id, "model")) == "gpt-4o-mini[/]"
        with db(data_dir) as conn:  # a provider's error text, as a hostile provider would send it
            conn.execute("UPDATE batches SET status = 'failed', last_error = ? WHERE provider_batch_id = ?",
                         (HOSTILE, batch_id))
        app.refresh_status()
        await settle(pilot)
        problems = str(app.screen.query_one("#problems").render())
        assert "␛]52;c;aGVsbG8=␛\\" in problems and "[/] [bold red]x" in problems
        assert "\x1b" not in problems and "\x07" not in problems
        select(app, "batches", batch_id)
        await pilot.press("enter")
        await settle(pilot)
        title = str(app.screen.query_one("#inspect-title").render())
        assert "gpt-4o-mini[/]" in title and "\x1b" not in title
        assert app.is_running
