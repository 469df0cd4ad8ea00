"""The typed status document renders exactly the JSON the dict builder did.

`Status.to_json` is the `--once --json` contract (shared/cli.md, status.schema.json).
The baselines in __snapshots__/test_status_model/ were written by the dict builder
`views.status.collect` had before the document was typed; they are compared as text,
so key order counts too (`json.dump` writes keys in the order they come). A change to
the document shows here as a diff of the contract: update a baseline only for a change
cli.md and the schema make too.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from batchtop.store import Store, alerts
from batchtop.tui import rows
from batchtop.views import status
from batchtop.views.status_model import BatchStatus, Status, whole_second

import console_sample as sample

SCHEMA = json.loads(resources.files("batchtop").joinpath("status.schema.json").read_text())
BASELINES = Path(__file__).parent / "__snapshots__" / "test_status_model"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> sample.Sample:
    return sample.build(tmp_path_factory.mktemp("sample") / "data")


def _text(doc: Status) -> str:
    """The document as `--once --json` writes it, the random submission uuids masked."""
    out = doc.to_json()
    for b in out["batches"]:
        b["submission"] = "<uuid>"
    jsonschema.validate(out, SCHEMA, format_checker=jsonschema.FormatChecker())
    return json.dumps(out, indent=2, ensure_ascii=False) + "\n"


def _check(text: str, name: str) -> None:
    """`text` against its baseline; `BATCHTOP_UPDATE_BASELINES=1` rewrites the baseline
    (for a change of the contract that cli.md and the schema make too)."""
    import os

    if os.environ.get("BATCHTOP_UPDATE_BASELINES") == "1":
        (BASELINES / name).write_text(text)
    assert text == (BASELINES / name).read_text()


def test_the_sample_renders_as_the_dict_builder_did(data: sample.Sample) -> None:
    with Store(data.data_dir, create=False) as store:
        doc = status.collect(store.db, data.config, data.now)
    _check(_text(doc), "sample.json")


def test_every_kind_of_alert_renders_as_the_dict_builder_did(data: sample.Sample, tmp_path: Path) -> None:
    """The sample's copy with what a bad day adds: a quota alert, a lost batch, an
    unknown submission with candidates, a quarantined ingest."""
    copy = tmp_path / "data"
    shutil.copytree(data.data_dir, copy)
    with Store(copy, create=False) as store:
        alerts.raise_alert(store, alerts.QUOTA, "openai", "openai: out of credit", data.now - 60)
        with store.transaction() as db:
            db.execute("UPDATE batches SET lost_at = ? WHERE provider_batch_id = ?", (data.now - 30, data.failed_batch))
            db.execute("UPDATE requests SET state = 'failed' WHERE id IN (SELECT request_id FROM attempts a"
                       " JOIN batches b ON b.id = a.batch_id WHERE b.provider_batch_id = ?)", (data.failed_batch,))
            db.execute("UPDATE batches SET status = 'unknown', candidates = '[\"batch_a\", \"batch_b\"]'"
                       " WHERE provider_batch_id = ?", (data.running_batch,))
            db.execute("UPDATE batches SET quarantined_at = ?, last_error = 'bad json' WHERE id = 1", (data.now - 10,))
        doc = status.collect(store.db, data.config, data.now)
    kinds = [a.kind for a in doc.alerts]
    assert {"quota", "lost_batch", "unknown_submissions", "ingest_quarantined"} <= set(kinds), kinds
    _check(_text(doc), "bad_day.json")


def test_the_empty_document_is_the_old_one() -> None:
    """Equal as data: the old empty dict spelled `in_flight_estimate`'s keys in another order."""
    _check(json.dumps(status.empty(sample.NOW).to_json(), indent=2) + "\n", "empty.json")
    assert status.empty(sample.NOW).to_json() == json.loads((BASELINES / "empty.json").read_text())


def test_a_new_batch_field_reaches_the_json_and_stays_a_number_until_then() -> None:
    """What a new field costs: its declaration. A TIME field is a float in the
    document and ISO text in the JSON; the console counts from the same second."""
    from dataclasses import dataclass, field

    from batchtop.views.status_model import TIME

    @dataclass(frozen=True)
    class WithEta(BatchStatus):
        eta_at: float | None = field(default=None, metadata=TIME)

    now = sample.NOW
    batch = WithEta("b1", "openai", "gpt-4o", "in_progress", 10, 2, 0, created_at=now - 90.7, eta_at=now + 600.5)
    out = Status(now, batches=(batch,)).to_json()["batches"][0]
    assert list(out)[-1] == "eta_at" and out["eta_at"] == "2026-11-25T10:10:00Z"
    assert out["created_at"] == "2026-11-25T09:58:29Z" and whole_second(batch.created_at) == now - 91
    assert rows.ago(batch.created_at, now) == "1m"
    assert replace(batch, eta_at=None).to_json()["eta_at"] is None
