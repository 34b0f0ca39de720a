"""``python -m popvault``: the same as the ``popvault`` command."""

if __name__ == "__main__":  # a helper process imports this module too (spawn): it must not run
    from popvault.cli.main import main

    main()
