"""placeholder"""

import click


@click.command("migrate")
def command() -> None:
    """TODO"""
