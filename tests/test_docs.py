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


def api_routes() -> list[str]:
    """Every route of the API as "METHOD /path", from its OpenAPI schema (which sees the
    routes of every included router)."""
    from reviewqueue.api.app import create_app

    paths = create_app("sqlite://").openapi()["paths"]
    return [f"{method.upper()} {path}" for path, ops in paths.items() for method in ops]


def test_every_api_route_is_in_the_readme():
    routes = api_routes()
    assert len(routes) >= 10  # the check itself sees the routes
    missing = [r for r in routes if f"`{r}" not in README]
    assert missing == [], f"document these in README.md: {missing}"
