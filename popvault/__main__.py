"""``python -m popvault``: the same as the ``popvault`` command."""

from popvault.cli.main import main

main()
