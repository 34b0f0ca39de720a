"""``python -m popvault``: the same as the ``popvault`` command."""

from popvault.cli.main import main

if __name__ == "__main__":  # not when a helper process imports it (multiprocessing spawn)
    main()
