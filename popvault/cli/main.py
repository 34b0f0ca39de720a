"""The ``popvault`` command: global options, command registry, errors to exit codes.

Only the CLI knows about terminals. Every PopvaultError becomes one line
``popvault: error: ...`` (plus ``popvault: hint: ...``) and its exit code; nothing
prints a traceback unless POPVAULT_DEBUG is set.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import click

from popvault import __version__, interrupts
from popvault.cli.context import Context
from popvault.cli.group import HelpGroup, StdoutClosed
from popvault.cli.output import error
from popvault.errors import PopvaultError

#: Command name -> module (imported only when that command runs: fast start-up).
COMMANDS = {
    "backup": "cmd_backup",
    "check": "cmd_check",
    "copy": "cmd_copy",
    "demo": "cmd_demo",
    "export": "cmd_export",
    "import": "cmd_import",
    "index": "cmd_index",
    "init": "cmd_init",
    "key": "cmd_key",
    "list": "cmd_list",
    "migrate": "cmd_migrate",
    "prune": "cmd_prune",
    "repair": "cmd_repair",
    "restore": "cmd_restore",
    "search": "cmd_search",
    "serve": "cmd_serve",
    "show": "cmd_show",
    "stats": "cmd_stats",
    "unlock": "cmd_unlock",
    "upgrade": "cmd_upgrade",
}


class LazyGroup(HelpGroup):
    """A group that imports a command's module only when the command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command: click.Command = importlib.import_module(f"popvault.cli.{module}").command
        _add_quiet(command)
        return command


def _set_quiet(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        obj = ctx.find_object(Context)
        if obj is not None:
            obj.quiet = True


def _add_quiet(command: click.Command) -> None:
    """Let ``-q/--quiet`` also follow the command (``popvault backup --quiet``)."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _add_quiet(sub)
        return
    if any(getattr(p, "name", None) == "quiet" for p in command.params):
        return
    command.params.append(
        click.Option(
            ["-q", "--quiet"],
            is_flag=True,
            expose_value=False,
            is_eager=True,
            callback=_set_quiet,
            help="Print nothing but errors (same as the global --quiet).",
        )
    )


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--vault",
    "vault_path",
    envvar="POPVAULT_VAULT",
    metavar="PATH|s3://BUCKET[/PREFIX]",
    help="The vault: a directory, or S3-compatible object storage (env POPVAULT_VAULT;"
    " default: 'vault' in the config file).",
)
@click.option("--passphrase-file", metavar="FILE", help="Read the vault passphrase from FILE.")
@click.option(
    "--passphrase-command",
    metavar="CMD",
    help="Run CMD and take its first output line as passphrase.",
)
@click.option(
    "--cache",
    metavar="FILE",
    envvar="POPVAULT_CACHE",
    help="Index cache file (default: ~/.cache/popvault/<vault id>-<location>.sqlite).",
)
@click.option(
    "--config",
    metavar="FILE",
    envvar="POPVAULT_CONFIG",
    help="Config file (env POPVAULT_CONFIG; default ~/.config/popvault/config.toml).",
)
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")
@click.version_option(__version__, prog_name="popvault")
@click.pass_context
def cli(
    ctx: click.Context,
    vault_path: str | None,
    passphrase_file: str | None,
    passphrase_command: str | None,
    cache: str | None,
    config: str | None,
    quiet: bool,
) -> None:
    """popvault: back up POP3 mail into an encrypted, deduplicated vault, and get it back.

    Exit codes: 0 ok, 1 failure, 2 usage, 3 partial, 10 no vault, 11 locked,
    12 wrong passphrase, 20 integrity, 75 temporary (retry), 77 authentication,
    130/143/129 interrupted (SIGINT/SIGTERM/SIGHUP).
    """
    ctx.obj = Context(vault_path, passphrase_file, passphrase_command, cache, config, quiet)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn errors into exit codes (never a traceback)."""
    try:
        with interrupts.handlers():
            rv = cli.main(args=argv, prog_name="popvault", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except PopvaultError as exc:
        error(exc.message, exc.hint)
        code = exc.exit_code
    except interrupts.Interrupted as exc:
        error(
            f"interrupted ({exc.signal_name}); everything committed so far is safe",
            "run the same command again to go on where it stopped",
        )
        code = exc.exit_code
    except click.exceptions.Abort as exc:
        # click turns Ctrl-C (KeyboardInterrupt) and end of input at a prompt into Abort
        if isinstance(exc.__context__, KeyboardInterrupt):
            error("interrupted (SIGINT); everything committed so far is safe")
            code = 130
        else:
            error("the input ended at a prompt", "give the answer on the terminal or as an option")
            code = 2
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "popvault"
        error(exc.format_message(), f"run '{command} --help' for the options")
        code = 2
    except click.ClickException as exc:
        error(exc.format_message())
        code = exc.exit_code
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except KeyboardInterrupt:
        error("interrupted (SIGINT); everything committed so far is safe")
        code = 130
    except (BrokenPipeError, StdoutClosed):
        code = _stdout_closed()
    except OSError as exc:
        error(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
        code = 1
    except Exception as exc:
        if os.environ.get("POPVAULT_DEBUG"):
            traceback.print_exc()
        error(f"internal error: {type(exc).__name__}: {exc}", "please report this as a bug")
        code = 1
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_closed()
    sys.exit(code)


def _stdout_closed() -> int:
    """Whoever read our stdout stopped reading (``| head``): that is fine, exit 0.

    Points stdout at /dev/null so that flushing what is still buffered, here and at
    interpreter exit, cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (an in-process test runner)
        pass
    return 0
