"""``python -m popvault`` and the ``popvault`` command's entry point.

:func:`run` holds back SIGINT, SIGTERM and SIGHUP before the program's modules load (a
signal then ends the run cleanly, exit 130/143/129, instead of with a traceback), then
runs the CLI. A helper process imports this module too (spawn): importing it runs nothing.
"""

from __future__ import annotations


def run() -> None:
    from popvault import interrupts

    interrupts.hold_during_start()
    try:
        from popvault.cli.main import main

        main()
    finally:
        # the run's exit code is decided: a signal while the interpreter shuts down
        # (which restores the default actions) must not replace it by "killed"
        interrupts.block_until_exit()


if __name__ == "__main__":
    run()
