"""What checkpoint storage remembers of a job: its savepoints, and which snapshot is newest."""

from __future__ import annotations

from pathlib import Path

from flowactors.checkpoint.storage import CheckpointStorage, metadata_for


def complete(directory: Path, job: str, checkpoint_id: int, kind: str) -> Path:
    from flowactors.checkpoint.storage import write_metadata_atomically

    directory.mkdir(parents=True, exist_ok=True)
    write_metadata_atomically(directory, metadata_for(job, checkpoint_id, kind, {}))
    return directory


def test_a_recorded_savepoint_newer_than_every_checkpoint_is_the_latest(tmp_path: Path) -> None:
    storage = CheckpointStorage(tmp_path / "storage", "ledger")
    for n in (1, 2):
        complete(storage.checkpoint_dir(n), "ledger", n, "checkpoint")
    savepoint = complete(tmp_path / "elsewhere" / "sp", "ledger", 3, "savepoint")
    storage.record_savepoint(3, savepoint)

    assert storage.latest_id() == 3  # the next run numbers from 4
    latest = storage.latest_valid()
    assert latest is not None
    assert (latest.checkpoint_id, latest.kind, latest.directory) == (3, "savepoint", savepoint)


def test_a_newer_checkpoint_beats_an_older_savepoint(tmp_path: Path) -> None:
    storage = CheckpointStorage(tmp_path / "storage", "ledger")
    savepoint = complete(tmp_path / "sp", "ledger", 1, "savepoint")
    storage.record_savepoint(1, savepoint)
    complete(storage.checkpoint_dir(2), "ledger", 2, "checkpoint")
    latest = storage.latest_valid()
    assert latest is not None and (latest.checkpoint_id, latest.kind) == (2, "checkpoint")


def test_a_savepoint_that_was_deleted_falls_back_to_the_checkpoint(tmp_path: Path) -> None:
    storage = CheckpointStorage(tmp_path / "storage", "ledger")
    complete(storage.checkpoint_dir(1), "ledger", 1, "checkpoint")
    storage.record_savepoint(2, tmp_path / "gone")
    latest = storage.latest_valid()
    assert latest is not None and latest.checkpoint_id == 1
