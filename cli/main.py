"""Entry point: global options, error translation and exit codes (contract section 5).

Exit codes: 0 success; 1 the thing asked about failed; 2 bad usage or bad input;
130 cancelled. Expected errors print one ``error: ...`` line; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import click

from runjournal import __version__
from runjournal.journal.errors import BadInput, JournalError

from .output import Interrupted, echo

#: every command, by name: (its module in runjournal.cli, its function). A command's module is
#: imported only when the command runs (or help lists it), so `--version` imports none, and
#: `exec` not the daemon or the bench.
COMMANDS = {
    "init": ("run_cmds", "init"),
    "plan": ("run_cmds", "plan"),
    "start": ("run_cmds", "start"),
    "exec": ("run_cmds", "exec_"),
    "resume": ("run_cmds", "resume"),
    "status": ("projection_cmds", "status"),
    "runs": ("projection_cmds", "runs"),
    "show": ("projection_cmds", "show"),
    "replay": ("projection_cmds", "replay"),
    "tail": ("journal_cmds", "tail"),
    "project": ("projection_cmds", "project"),
    "watch": ("projection_cmds", "watch"),
    "verify": ("journal_cmds", "verify"),
    "upgrade": ("journal_cmds", "upgrade"),
    "archive": ("retention_cmds", "archive"),
    "prune": ("retention_cmds", "prune"),
    "export": ("journal_cmds", "export"),
    "import": ("journal_cmds", "import_"),
    "copy": ("journal_cmds", "copy_"),
    "bench": ("bench", "bench"),
    "logs": ("ops_cmds", "logs"),
    "cancel": ("ops_cmds", "cancel"),
    "report": ("report_cmds", "report"),
}


class LazyGroup(click.Group):
    """A group whose commands are imported when asked for (``COMMANDS``)."""

    def list_commands(self, ctx) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx, name: str):
        where = COMMANDS.get(name)
        if where is None:
            return None
        return getattr(importlib.import_module(f"runjournal.cli.{where[0]}"), where[1])

    @property
    def commands(self) -> dict:
        """Every command, imported (for help and for tests that look at all of them)."""
        return {name: self.get_command(None, name) for name in COMMANDS}

    @commands.setter
    def commands(self, value) -> None:
        if value:
            raise TypeError("commands are listed in COMMANDS")


EXIT_CANCELLED = 130
#: the variable click's shell completion sets (docs/cli.md, "Shell completion")
COMPLETE_VAR = "_RUNJOURNAL_COMPLETE"

#: the exit code of each library error (contract section 5), first match wins: 2 for bad
#: usage or bad input, 1 for everything else that failed (a corrupt journal, a refused
#: resume, a lock that stayed busy)
EXIT_CODES: list[tuple[type[JournalError] | str, int]] = [
    (BadInput, 2),
    ("runjournal.runner.run:TokenRefused", 2),  # named: the runner is imported only by commands that run
    ("runjournal.projections.replay:RunNotFound", 2),  # an unknown run is bad input, in every command
    (JournalError, 1),
]


def exit_code_of(error: JournalError) -> int:
    for cls, code in EXIT_CODES:
        if isinstance(cls, str):
            module, name = cls.split(":")
            loaded = sys.modules.get(module)
            if loaded is None:  # never imported: no error of it can exist
                continue
            cls = getattr(loaded, name)
        if isinstance(error, cls):
            return code
    raise TypeError(f"not a runjournal error: {error!r}")


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--root", type=click.Path(file_okay=False), help="Project root (default: $RUNJOURNAL_ROOT, $CODEX_ORCHESTRATOR_ROOT or the current directory).")
@click.option("--runs-dir", type=click.Path(file_okay=False), help="Runs directory (default: $CODEX_ORCHESTRATOR_RUNS_DIR or <root>/.runs).")
@click.option("--out-dir", type=click.Path(file_okay=False), help="Out directory (default: $CODEX_ORCHESTRATOR_OUT_DIR or <root>/out).")
@click.option("--store", metavar="URL", help="Where the journals are: a runs directory (the file store) or a postgresql:// URL (default: $RUNJOURNAL_STORE or the runs directory).")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, "--version", prog_name="runjournal")
@click.pass_context
def cli(ctx, root, runs_dir, out_dir, store, debug):
    """Record pipeline runs as an event-sourced journal, and rebuild what people read from it.

    Example: runjournal init && runjournal start
    """
    from .context import found_root, resolve

    source = _root_source(ctx, root)
    ctx.obj = resolve(found_root(root, ctx.meta), runs_dir, out_dir, debug, store)
    if source is not None and not os.path.isdir(ctx.obj.root):
        raise BadInput(f"{source} {ctx.obj.root} does not exist (the root is never created: create it, or give an existing directory)")


def _root_source(ctx: click.Context, given: str | None) -> str | None:
    """What named the root (--root or its variables), kept in ``ctx.meta`` for the commands
    that say where they looked for a config; None when nothing did."""
    from .context import _pick

    named, source = _pick(given, "--root", "RUNJOURNAL_ROOT", "CODEX_ORCHESTRATOR_ROOT")
    if not named:
        return None
    ctx.meta["runjournal.root_source"] = source
    return source


def _fail(message: str, code: int) -> None:
    echo(f"error: {message}", err=True)
    sys.exit(code)


def _usage_message(error: click.UsageError) -> str:
    """The message for bad usage. Where click's wording has changed between the releases the
    project allows (an unknown option), it is made here from the error's fields instead."""
    if isinstance(error, click.NoSuchOption):
        message = f"No such option '{error.option_name}'."
        if error.possibilities:
            message += " Did you mean " + ", ".join(f"'{p}'" for p in sorted(error.possibilities)) + "?"
        return message
    return error.format_message()


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args and not os.environ.get(COMPLETE_VAR):  # shell completion calls come without arguments
        echo(cli.get_help(click.Context(cli, info_name="runjournal")))
        sys.exit(0)
    debug = "--debug" in args
    try:
        code = cli.main(args=args, prog_name="runjournal", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except Interrupted as e:  # a long-running command says what it had done
        echo(str(e), err=True)
        sys.exit(EXIT_CANCELLED)
    except (click.exceptions.Abort, KeyboardInterrupt):
        echo("stopped by Ctrl-C", err=True)
        sys.exit(EXIT_CANCELLED)
    except click.UsageError as e:
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
        _fail(_usage_message(e) + hint, 2)
    except click.ClickException as e:
        _fail(e.format_message(), e.exit_code)
    except JournalError as e:
        if debug:
            traceback.print_exc()
        _fail(str(e), exit_code_of(e))
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (e.g. `| head`): not an error
        sys.exit(0)
    except OSError as e:
        if debug:
            traceback.print_exc()
        where = f": {e.filename}" if e.filename else ""
        _fail(f"{e.strerror or e}{where}", 1)
    sys.exit(code if isinstance(code, int) else 0)
