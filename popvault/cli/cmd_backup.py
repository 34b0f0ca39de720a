"""placeholder"""

import click


@click.command("backup")
def command() -> None:
    """TODO"""
