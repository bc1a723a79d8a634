"""The host's commit mark (``storage/postgres/commit_mark.py``): shared by every process on one
database, never lowered, independent of who connects."""

from __future__ import annotations

import multiprocessing

from fhir_hub.storage.postgres.commit_mark import CommitMark, mark_path

URL = "postgresql://alice:secret@127.0.0.1:6543/markdb"


def _raise_in_child(url: str, lsn: int) -> None:
    mark = CommitMark(url)
    mark.raise_to(lsn)
    mark.close()


def test_a_mark_raised_in_another_process_is_read_here() -> None:
    mark_path(URL).unlink(missing_ok=True)
    mark = CommitMark(URL)
    try:
        assert mark.read() == 0
        child = multiprocessing.get_context("spawn").Process(target=_raise_in_child, args=(URL, 5000))
        child.start()
        child.join(60)
        assert child.exitcode == 0
        assert mark.read() == 5000
        mark.raise_to(4000)  # an older commit published late does not lower it
        assert mark.read() == 5000
        mark.raise_to(7000)
        other = CommitMark(URL)
        assert other.read() == 7000
        other.close()
    finally:
        mark.close()
        mark_path(URL).unlink(missing_ok=True)


def test_the_file_names_the_database_not_the_user() -> None:
    assert mark_path(URL) == mark_path("postgresql://bob@127.0.0.1:6543/markdb")
    assert mark_path(URL) != mark_path("postgresql://alice@127.0.0.1:6543/otherdb")
    assert mark_path(URL) != mark_path("postgresql://alice@127.0.0.1:6544/markdb")
    assert "secret" not in str(mark_path(URL)) and "alice" not in str(mark_path(URL))


def test_a_mark_beyond_the_primary_is_left_from_another_cluster_and_drops() -> None:
    mark_path(URL).unlink(missing_ok=True)
    stale = CommitMark(URL)
    stale.raise_to(9_000_000)  # a cluster that had this host, port and name before
    fresh = CommitMark(URL)
    try:
        fresh.start(lambda: 1200)
        assert fresh.read() == stale.read() == 1200
        fresh.start(lambda: 1500)  # behind the primary: raised to it
        assert stale.read() == 1500
    finally:
        stale.close()
        fresh.close()
        mark_path(URL).unlink(missing_ok=True)
