"""The typed status document renders exactly the JSON the dict builder did.

`Status.to_json` is the `--once --json` contract (shared/cli.md, status.schema.json):
compared on the console's sample data (every kind of buffer, batch, alert and
provider line a real engine run leaves) key for key and in key order, since
`json.dump` writes keys in the order they come.
"""

from __future__ import annotations

import json
from importlib import resources

import jsonschema
import pytest

import console_sample as sample
import old_status_dict
from batchtop.store import Store
from batchtop.views import status

SCHEMA = json.loads(resources.files("batchtop").joinpath("status.schema.json").read_text())


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> sample.Sample:
    return sample.build(tmp_path_factory.mktemp("sample") / "data")


def test_to_json_is_the_old_document_on_the_sample(data: sample.Sample) -> None:
    with Store(data.data_dir, create=False) as store:
        typed = status.collect(store.db, data.config, data.now)
        old = old_status_dict.collect(store.db, data.config, data.now)
    assert json.dumps(typed.to_json(), indent=2) == json.dumps(old, indent=2)
    jsonschema.validate(typed.to_json(), SCHEMA, format_checker=jsonschema.FormatChecker())


def test_the_empty_document_is_the_old_one() -> None:
    assert status.empty(sample.NOW).to_json() == old_status_dict.empty(sample.NOW)


def test_to_json_is_the_old_document_with_every_kind_of_alert(data: sample.Sample, tmp_path) -> None:
    """The sample's copy with what a bad day adds: a quota alert, a lost batch, an
    unknown submission with candidates, a quarantined ingest."""
    import shutil

    from batchtop.store import alerts

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
        typed = status.collect(store.db, data.config, data.now)
        old = old_status_dict.collect(store.db, data.config, data.now)
    kinds = [a.kind for a in typed.alerts]
    assert {"quota", "lost_batch", "unknown_submissions", "ingest_quarantined"} <= set(kinds), kinds
    assert json.dumps(typed.to_json(), indent=2) == json.dumps(old, indent=2)
