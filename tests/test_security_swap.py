"""A journal directory swapped for a link after its writer opened it changes nothing.

An account that can write the runs directory can rename a task's directory away and put a
link to anywhere in its place. A writer that is already open works through the descriptor of
the directory it opened, and every file of the journal (segments, head, lock, pending spills,
torn copies) is opened relative to it: nothing lands where the link points.
"""

from __future__ import annotations

from pathlib import Path

from helpers.histories import make_run_id
from helpers.trees import projection_tree

import pytest

from runjournal.journal import FileStore, LockTimeout, check, read_records
from runjournal.journal import events as ev
from runjournal.journal import spill
from runjournal.journal.lock import JournalLock

RUN = make_run_id(1)


def test_a_task_directory_swapped_for_a_link_after_the_open_is_never_written_through(tmp_path: Path):
    runs, outside = tmp_path / "runs", tmp_path / "outside"
    outside.mkdir()
    (outside / "journal").mkdir()  # what the link offers in place of the journal
    store = FileStore(str(runs), durability="none", lock_timeout=0.5)
    store.append("default", RUN, ev.Heartbeat())
    before = projection_tree(outside)
    (runs / "default").rename(runs / "moved")
    (runs / "default").symlink_to(outside)
    for _ in range(3):
        store.append("default", RUN, ev.Heartbeat())
    store.append_batch("default", [(RUN, ev.Heartbeat()), (RUN, ev.Heartbeat())])
    store.writer("default")._roll()  # noqa: SLF001 -- a new segment, created by name
    store.append("default", RUN, ev.Heartbeat())
    holder = JournalLock(str(runs / "moved" / "journal" / "lock"))
    holder.acquire()
    with pytest.raises(LockTimeout, match="were kept in"):
        store.append("default", RUN, ev.Heartbeat())  # spilled to pending/, in the moved directory
    assert [p.name for p in (runs / "moved" / "journal" / "pending").iterdir()][0].endswith(".rjp")
    holder.release()
    holder.close()
    store.flush("default")  # merges the spill
    store.close()
    assert projection_tree(outside) == before
    assert sorted(p.name for p in outside.rglob("*")) == ["journal"]
    moved = str(runs / "moved" / "journal")
    assert [r.seq for r in read_records(moved)] == list(range(1, 9))
    assert check(moved).ok


def test_a_link_planted_at_pending_is_an_error_and_nothing_is_merged_through_it(tmp_path: Path):
    from runjournal.journal import JournalWriteFailed

    runs, outside = tmp_path / "runs", tmp_path / "outside"
    outside.mkdir()
    forged = spill.write(str(outside.parent / "forge"), "01795726964628116759-17522-000001.rjp", spill.encode([(RUN, ev.Heartbeat(), 1)]))
    (outside / "01795726964628116759-17522-000001.rjp").write_bytes((tmp_path / "forge" / forged).read_bytes())
    store = FileStore(str(runs), durability="none")
    store.append("default", RUN, ev.Heartbeat())
    store.close()
    (runs / "default" / "journal" / "pending").symlink_to(outside)
    store = FileStore(str(runs), durability="none")
    try:
        with pytest.raises(JournalWriteFailed, match=r"pending is a symbolic link or not a directory; runjournal writes nothing through it"):
            store.append("default", RUN, ev.Heartbeat())
    finally:
        store.close()
    assert sorted(p.name for p in outside.iterdir()) == ["01795726964628116759-17522-000001.rjp"]
    assert [r.seq for r in read_records(str(runs / "default" / "journal"))] == [1]
