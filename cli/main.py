"""Entry point: global options, error translation and exit codes (contract section 5).

Exit codes: 0 success; 1 the thing asked about failed; 2 bad usage or bad input;
130 cancelled. Expected errors print one ``error: ...`` line; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import sys
import traceback
from importlib.metadata import PackageNotFoundError, version

import click

from runjournal.journal import BadInput, JournalError
from runjournal.runner import TokenRefused

from .context import resolve
from .output import echo
from .bench import bench
from .journal_cmds import copy_, export, import_, tail, verify
from .projection_cmds import project, replay, runs, show, status, watch
from .run_cmds import exec_, init, plan, resume, start

try:
    __version__ = version("runjournal")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+local"

EXIT_CANCELLED = 130

#: the exit code of each library error (contract section 5), first match wins: 2 for bad
#: usage or bad input, 1 for everything else that failed (a corrupt journal, a refused
#: resume, a lock that stayed busy)
EXIT_CODES: list[tuple[type[JournalError], int]] = [
    (BadInput, 2),
    (TokenRefused, 2),
    (JournalError, 1),
]


def exit_code_of(error: JournalError) -> int:
    return next(code for cls, code in EXIT_CODES if isinstance(error, cls))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    ctx.obj = resolve(root, runs_dir, out_dir, debug, store)


for command in (init, plan, start, exec_, resume, status, runs, show, replay, tail, project, watch, verify, export, import_, copy_, bench):
    cli.add_command(command)


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
    if not args:
        echo(cli.get_help(click.Context(cli, info_name="runjournal")))
        sys.exit(0)
    debug = "--debug" in args
    try:
        code = cli.main(args=args, prog_name="runjournal", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        _fail("cancelled", EXIT_CANCELLED)
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
