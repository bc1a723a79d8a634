"""Entry point of the `fhir-hub` console script.

Each command group lives in its own module and registers itself on the one app, so this file only
lists them. A module is imported when its command is invoked (or the help lists it), not at start-up:
``fhir-hub validate`` should not pay for FastAPI, uvicorn, httpx and the stores (``serve`` and
``load`` need them, ``validate`` does not), which importing every module cost about 0.3 s of CPU.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from typer.core import TyperGroup

#: Command name -> the module of ``fhir_hub.cli`` whose ``register`` adds it, in the order ``--help`` lists them.
COMMANDS: dict[str, str] = {
    "serve": "serve", "demo-data": "demo", "load": "load", "reindex": "reindex", "import-claims": "import_claims",
    "import": "import_claims", "map": "import_claims", "export": "move", "validate": "validate", "profiles": "profiles",
    "terminology": "terminology", "clients": "auth", "users": "auth", "mpi": "mpi", "db": "db",
}


class _LazyGroup(TyperGroup):
    """The root group: a command's module is imported and registered on first lookup of its name."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(dict.fromkeys([*COMMANDS, *self.commands]))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands:
            # an unknown name loads them all, so the "did you mean" suggestion sees every command
            for module in [COMMANDS[cmd_name]] if cmd_name in COMMANDS else dict.fromkeys(COMMANDS.values()):
                self._load(module)
        return self.commands.get(cmd_name)

    def _load(self, module: str) -> None:
        sub = typer.Typer(add_completion=False)
        importlib.import_module(f"fhir_hub.cli.{module}").register(sub)
        for name, command in typer.main.get_group(sub).commands.items():
            self.commands.setdefault(name, command)


class _App(typer.Typer):
    """The app; ``fhir-hub validate …`` run as a process goes to :func:`fhir_hub.cli.validate.fast`
    first, which reads its options without typer's pydantic-based coercion (a third of the command's
    start-up), and hands back to typer what it does not take (help, malformed options)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not args and not kwargs and sys.argv[1:2] == ["validate"]:
            from fhir_hub.cli import validate

            code = validate.fast(sys.argv[2:])
            if code is not None:
                sys.stdout.flush()
                raise SystemExit(code)
        return super().__call__(*args, **kwargs)


app = _App(cls=_LazyGroup, no_args_is_help=True, add_completion=False, help="FHIR R4 hub for Vietnam's health sector.")


@app.callback()
def main() -> None:
    """fhir-hub: FHIR R4 server, loaders and tools."""


if __name__ == "__main__":  # pragma: no cover
    app()
