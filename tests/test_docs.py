"""The README documents every CLI command: the docs cannot drift from the code."""

from pathlib import Path

import typer.main

from reviewqueue import cli

README = (Path(__file__).parent.parent / "README.md").read_text()


def _commands(group: typer.Typer, prefix: str = ""):
    click_group = typer.main.get_command(group)
    for name, command in click_group.commands.items():
        full = f"{prefix}{name}"
        if hasattr(command, "commands"):
            for sub in command.commands:
                yield f"{full} {sub}"
        else:
            yield full


def test_every_cli_command_is_in_the_readme():
    missing = [c for c in _commands(cli.app) if f"reviewqueue {c}" not in README]
    assert missing == [], f"document these in README.md: {missing}"


def test_every_api_route_is_in_the_readme():
    from fastapi.routing import APIRoute

    from reviewqueue.api.app import create_app

    routes = [r for r in create_app("sqlite://").routes if isinstance(r, APIRoute)]
    missing = [f"{m} {r.path}" for r in routes for m in r.methods if f"`{m} {r.path}" not in README]
    assert missing == [], f"document these in README.md: {missing}"
