"""Shell completion of ids (click's mechanism: ``_RUNJOURNAL_COMPLETE=bash_source runjournal``).

Each callback reads what the command would: the store and the config of the root, runs dir and
store given on the command line so far (or their variables). Completion never fails: whatever
cannot be read offers nothing.
"""

from __future__ import annotations

import click
from click.shell_completion import CompletionItem

__all__ = ["complete_pipeline", "complete_run", "complete_task"]


def _settings(ctx: click.Context):
    from .context import found_root, resolve

    given = ctx.find_root().params
    return resolve(found_root(given.get("root")), given.get("runs_dir"), given.get("out_dir"), False, given.get("store"))


def _offer(ids, incomplete: str, help_of=None) -> list[CompletionItem]:
    return [CompletionItem(i, help=help_of(i) if help_of else None) for i in ids if i.startswith(incomplete)]


def _store(settings):
    from runjournal.journal import open_store

    return open_store(settings.store_url or settings.runs_dir)


def complete_task(ctx: click.Context, param, incomplete: str) -> list[CompletionItem]:
    """Task ids: the tasks that have a journal."""
    try:
        store = _store(_settings(ctx))
        try:
            return _offer(store.tasks(), incomplete)
        finally:
            store.close()
    except Exception:  # noqa: BLE001 - completion offers nothing rather than a traceback in the shell
        return []


def complete_run(ctx: click.Context, param, incomplete: str) -> list[CompletionItem]:
    """Run ids of the chosen task (--task), else of every task, newest first, each with its
    pipeline and status as help (zsh and fish show it)."""
    from runjournal.projections import Projector

    try:
        settings = _settings(ctx)
        store = _store(settings)
        try:
            task = ctx.params.get("task")
            found = {}
            for t in [task] if task else store.tasks():
                state = Projector(settings.runs_dir, settings.out_dir, t, store=store, roots=settings.layout.roots).view()
                for run in state.runs.values():
                    found[run.run_id] = f"{run.pipeline_id} {run.status} (task {t})"
        finally:
            store.close()
        return _offer(sorted(found, reverse=True), incomplete, found.get)
    except Exception:  # noqa: BLE001
        return []


def complete_pipeline(ctx: click.Context, param, incomplete: str) -> list[CompletionItem]:
    """Pipeline ids of the config the command would read (--config, else the root's)."""
    from runjournal.runner import load

    try:
        config = load(ctx.params.get("config_path"), _settings(ctx).root)
        return _offer(list(config.pipelines), incomplete, lambda i: config.pipelines[i].title)
    except Exception:  # noqa: BLE001
        return []
