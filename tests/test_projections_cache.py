"""Projection files are a cache of the journal: replaced atomically but not fsynced, so after a
power loss they may be behind the checkpoint that says what they hold. A checkpoint records
the boot it was written in; one of another boot that covered files not fsynced is not trusted,
and every file is rendered again from the journal."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from helpers.trees import diff, projection_tree
from runjournal.journal import Journal
from runjournal.journal import events as ev
from runjournal.projections import Projector

RUN = "2025-12-01T09-37-11-576Z-1a60ebea"


def journal_with_a_run(root: Path) -> None:
    stages = (ev.StagePlan(id="build", title="Build"),)
    with Journal(str(root / ".runs" / "default" / "journal")) as j:
        j.append(RUN, ev.RunStarted(task_id="default", pipeline_id="ci", stages=stages))
        j.append(RUN, ev.StageStarted(index=1, stage_id="build"))
        j.append(RUN, ev.StageFinished(index=1, stage_id="build"))
        j.append(RUN, ev.RunCompleted())


def project(root: Path, **options) -> None:
    Projector(str(root / ".runs"), str(root / "out"), "default", **options).catch_up()


def rewrite_checkpoint(root: Path, **fields) -> None:
    path = root / ".runs" / "default" / ".projection" / "checkpoint"
    doc = msgspec.msgpack.decode(path.read_bytes())
    doc.update(fields)
    path.write_bytes(msgspec.msgpack.encode(doc))


def test_files_not_fsynced_before_a_reboot_are_rendered_again(tmp_path: Path):
    journal_with_a_run(tmp_path)
    project(tmp_path)
    good = projection_tree(tmp_path)
    manifest = tmp_path / ".runs" / "default" / "cli" / RUN / "manifest.json"
    manifest.write_bytes(b"")  # what a power loss can leave of a file renamed into place, not synced
    rewrite_checkpoint(tmp_path, boot="00" * 16)  # written in another boot
    project(tmp_path)
    assert not diff(good, projection_tree(tmp_path))


def test_within_a_boot_the_checkpoint_is_trusted_and_nothing_is_written_again(tmp_path: Path):
    journal_with_a_run(tmp_path)
    project(tmp_path)
    manifest = tmp_path / ".runs" / "default" / "cli" / RUN / "manifest.json"
    before = os.stat(manifest).st_ino
    project(tmp_path)
    assert os.stat(manifest).st_ino == before


def test_files_fsynced_are_trusted_across_a_reboot(tmp_path: Path):
    journal_with_a_run(tmp_path)
    project(tmp_path, sync=True)
    manifest = tmp_path / ".runs" / "default" / "cli" / RUN / "manifest.json"
    before = os.stat(manifest).st_ino
    rewrite_checkpoint(tmp_path, boot="00" * 16)
    project(tmp_path, sync=True)
    assert os.stat(manifest).st_ino == before  # durable files: nothing to render again
