"""placeholder"""

import click


@click.command("restore")
def command() -> None:
    """TODO"""
