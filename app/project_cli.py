"""`python -m app export-project NAME OUT.zip` and `python -m app import-project ZIP`: a whole project as one zip.

Bad input ends in one line (raised as `AppError`; `app.cli.main` prints it and exits 2), not a usage block or a
traceback.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from app.core.archives import format_bytes
from app.core.errors import AppError

COMMANDS = ("export-project", "import-project")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (`AppError`) instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        raise AppError(f"{self.prog}: {message} (see --help)")


def _export_parser(projects_dir: str) -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m app export-project",
        description="Write one project (database, images, checkpoints, embeddings) as one zip to open elsewhere.",
    )
    p.add_argument("name", metavar="NAME", help="the project's name")
    p.add_argument("out", metavar="OUT.zip", help="the zip file to write")
    p.add_argument("--projects-dir", default=projects_dir, help="where projects live (default %(default)s)")
    p.add_argument(
        "--no-embeddings",
        action="store_true",
        help="leave out the cached embeddings (a smaller zip; they are computed again when needed)",
    )
    return p


def _import_parser(projects_dir: str) -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m app import-project",
        description="Check a project zip (from export-project or the app's 'Whole project' export) and open it "
        "under a free name.",
    )
    p.add_argument("zip", metavar="ZIP", help="the project zip to import")
    p.add_argument("--projects-dir", default=projects_dir, help="where projects live (default %(default)s)")
    return p


def run_project_command(argv: Sequence[str], projects_dir: str) -> int:
    """Run ``export-project`` or ``import-project`` (``argv[0]``) with its arguments; returns the exit code.

    Args:
        argv: the command and its arguments.
        projects_dir: the default projects folder (``--projects-dir`` overrides it).

    Raises:
        AppError: bad input or a refused zip, with a one-line message.
    """
    command, rest = argv[0], list(argv[1:])
    if command == "export-project":
        return _export(_export_parser(projects_dir).parse_args(rest))
    return _import(_import_parser(projects_dir).parse_args(rest))


def _export(args: argparse.Namespace) -> int:
    from app.engine.session import ActiveLearningSession

    out = Path(args.out).expanduser()
    if out.suffix.lower() != ".zip":
        raise AppError(f"OUT.zip must be a file name ending in .zip, not '{args.out}'.")
    if out.is_dir():
        raise AppError(f"'{args.out}' is a folder; give a file name ending in .zip.")
    projects = ActiveLearningSession.list_projects(args.projects_dir)
    if args.name not in projects:
        known = ", ".join(projects) if projects else "none"
        raise AppError(f"There is no project named '{args.name}' in {args.projects_dir} (projects there: {known}).")
    session = ActiveLearningSession.open(args.projects_dir, args.name)
    try:
        path = session.export_project(out, embeddings=not args.no_embeddings)
        counts = session.progress()
    finally:
        session.close()
    extra = "" if args.no_embeddings else ", embeddings included"
    print(
        f"Wrote {path} ({format_bytes(path.stat().st_size)}): project '{args.name}', {counts['total']} images, "
        f"{counts['labeled']} labeled{extra}."
    )
    return 0


def _import(args: argparse.Namespace) -> int:
    from app.engine.project_import import import_project

    found = import_project(Path(args.zip).expanduser(), args.projects_dir)
    renamed = "" if found.name == found.original_name else f" (the name '{found.original_name}' was taken)"
    print(
        f"Imported project '{found.name}' into {args.projects_dir}{renamed}: {found.images} images, "
        f"{found.labeled} labeled. Start the app (python -m app) and open it from the project list."
    )
    return 0
