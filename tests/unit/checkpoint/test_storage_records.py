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


def test_names_that_read_alike_get_their_own_directories(tmp_path: Path) -> None:
    a = CheckpointStorage(tmp_path, "ledger v1")
    b = CheckpointStorage(tmp_path, "ledger-v1")
    assert a.job_dir != b.job_dir
    assert a.job_dir.name.startswith("ledger-v1-") and b.job_dir.name.startswith("ledger-v1-")
    assert CheckpointStorage(tmp_path, "ledger v1").job_dir == a.job_dir  # stable


def test_checkpoints_naming_another_job_are_never_loaded_or_deleted(tmp_path: Path) -> None:
    storage = CheckpointStorage(tmp_path, "ledger")
    complete(storage.checkpoint_dir(1), "ledger", 1, "checkpoint")
    complete(storage.checkpoint_dir(2), "ledger", 2, "checkpoint")
    stranger = complete(storage.checkpoint_dir(3), "other", 3, "checkpoint")
    complete(storage.checkpoint_dir(4), "ledger", 4, "checkpoint")

    latest = storage.latest_valid()
    assert latest is not None and latest.checkpoint_id == 4
    storage.discard(4)  # an aborted checkpoint of this job goes...
    assert not storage.checkpoint_dir(4).exists()
    storage.discard(3)  # ... one of another job stays
    latest = storage.latest_valid()
    assert latest is not None and latest.checkpoint_id == 2  # 3 is skipped
    storage.retain(1)
    assert storage.completed_ids() == [2, 3]
    assert (stranger / "_metadata").exists()


def test_checkpoints_of_the_earlier_layout_are_still_resumed(tmp_path: Path) -> None:
    legacy = complete(tmp_path / "ledger-v1" / "chk-00000007", "ledger v1", 7, "checkpoint")
    complete(tmp_path / "ledger-v1" / "chk-00000009", "ledger-v1", 9, "checkpoint")
    storage = CheckpointStorage(tmp_path, "ledger v1")
    latest = storage.latest_valid()
    assert latest is not None and latest.directory == legacy
    assert storage.latest_id() >= 7


def test_a_directory_claimed_by_another_job_is_refused(tmp_path: Path) -> None:
    import pytest

    from flowactors.errors import CheckpointError

    storage = CheckpointStorage(tmp_path, "ledger")
    storage.claim()
    storage.claim()  # the same job again: fine
    (storage.job_dir / "_job").write_text("someone else")
    with pytest.raises(CheckpointError, match="holds the checkpoints of job 'someone else'"):
        storage.claim()


def test_the_highest_parallelism_of_every_run_is_remembered(tmp_path: Path) -> None:
    storage = CheckpointStorage(tmp_path, "job")
    storage.claim()
    assert storage.record_parallelism({"sink": 2, "map": 2}) == {"sink": 2, "map": 2}
    assert storage.record_parallelism({"sink": 3, "map": 1}) == {"sink": 3, "map": 2}
    again = CheckpointStorage(tmp_path, "job")  # a later process
    assert again.record_parallelism({"sink": 1, "new": 4}) == {"sink": 3, "map": 2, "new": 4}
