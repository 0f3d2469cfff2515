"""Command line: serve (default) and simulate. Errors end in one line and a non-zero exit, not a traceback."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from app.core.errors import AppError
from app.core.settings import ProjectSettings
from app.project_cli import COMMANDS as PROJECT_COMMANDS
from app.project_cli import run_project_command
from app.ui.hosting import Hosting

DEFAULT_PROJECTS_DIR = os.environ.get("ALABEL_PROJECTS_DIR", str(Path.home() / "alabel-projects"))


def _serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m app",
        description="Active-learning image labeling in your browser. Subcommand: simulate (see --help there).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--share", action="store_true", help="also create a public share link (needs --auth or --public)")
    p.add_argument(
        "--auth", metavar="USER:PASS", action="append", help="require sign-in as this user (repeat for more users)"
    )
    p.add_argument("--auth-file", metavar="FILE", help="require sign-in; one user:password per line")
    p.add_argument(
        "--public", action="store_true", help="with --share and no --auth: anyone with the link may label and export"
    )
    p.add_argument("--projects-dir", default=DEFAULT_PROJECTS_DIR, help="where projects live (default %(default)s)")
    p.add_argument("--demo", action="store_true", help="open a ready demo project on scikit-learn's digits (offline)")
    p.add_argument(
        "--space",
        action="store_true",
        help="run as a Hugging Face Space (also when SYSTEM=spaces or SPACE_ID is set): listen where "
        "GRADIO_SERVER_NAME/GRADIO_SERVER_PORT say, open the demo, a private workspace per visitor",
    )
    p.add_argument(
        "--workspaces",
        action="store_true",
        help="give each visitor a private workspace of their own (the default on a Space)",
    )
    p.add_argument(
        "--shared-project",
        metavar="NAME",
        default=os.environ.get("ALABEL_SHARED_PROJECT") or None,
        help="everyone labels this one project together (also ALABEL_SHARED_PROJECT); only the host exports",
    )
    p.add_argument(
        "--host-user",
        metavar="NAME",
        action="append",
        default=[],
        help="with --shared-project: this signed-in user is the host (repeatable; ALABEL_HOST_PASSWORD also works)",
    )
    return p


def _simulate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m app simulate",
        description="Run the labeling loop with an oracle on labeled images to compare query strategies.",
    )
    p.add_argument("--data", required=True, help="class-folder directory (root/<class>/<image>) or CSV of path,label")
    p.add_argument("--test", help="separate labeled test set (default: a stratified held-out split of --data)")
    p.add_argument("--strategies", default="random,margin", help="comma-separated strategy names")
    p.add_argument("--initial", type=int, default=20, help="labels to start with (random, shared by strategies)")
    p.add_argument("--batch", type=int, default=20, help="labels added per round")
    p.add_argument("--budget", type=int, default=200, help="total labels")
    p.add_argument("--seeds", type=int, default=3, help="repetitions with different seeds")
    p.add_argument(
        "--backbone",
        help="timm architecture (default: the one --weights names, else the bundled EfficientNet-Lite0)",
    )
    p.add_argument(
        "--weights",
        help="local model file or folder for --backbone: .safetensors, .pth/.pt/.bin state dict, .ckpt, timm export",
    )
    p.add_argument(
        "--allow-torchscript",
        action="store_true",
        help="accept a TorchScript --weights file (opening one runs code from it: only for files you trust)",
    )
    p.add_argument("--image-size", type=int, help="input size in pixels (default: the backbone's own)")
    p.add_argument("--work-dir", help="keep the imported images and embeddings here to reuse them next time")
    p.add_argument("--out", help="write results JSON here (and a PNG plot beside it)")
    p.add_argument(
        "--cold-start",
        action="store_true",
        help="start each strategy but random from the app's cold-start pick (TypiClust) instead of random labels",
    )
    p.add_argument(
        "--audit-share",
        type=float,
        default=ProjectSettings.audit_share,
        help="share of each batch drawn at random as random checks, inside the budget (0 = none; default %(default)s)",
    )
    p.add_argument("--devices", type=int, default=1, help="processes (GPUs or CPU processes) to embed with")
    p.add_argument("--num-nodes", type=int, default=1, help="machines to embed with (needs torchrun or SLURM)")
    p.add_argument(
        "--dist-strategy",
        default="auto",
        help="Lightning strategy with several processes: auto (ddp_spawn on one machine), ddp_spawn, ddp",
    )
    return p


def _simulate(argv: Sequence[str]) -> int:
    args = _simulate_parser().parse_args(argv)
    if not args.weights:
        return _run_simulation(args, args.backbone or "tf_efficientnet_lite0", None)
    from app.engine.model_import import check_weights_file

    with tempfile.TemporaryDirectory(prefix="alabel-weights-") as tmp:
        # fail fast, before any image is imported: a refused file ends here with its one-line reason
        arch, weights = check_weights_file(args.backbone, args.weights, args.allow_torchscript, Path(tmp))
        print(f"Weights: {args.weights} ({arch}) loaded and checked.")
        return _run_simulation(args, arch, weights)


def _run_simulation(args: argparse.Namespace, backbone: str, weights: str | None) -> int:
    from app.engine.simulate import SimulationConfig, format_table, simulate

    cfg = SimulationConfig(
        data=args.data,
        test=args.test,
        strategies=[s.strip() for s in args.strategies.split(",") if s.strip()],
        initial=args.initial,
        batch=args.batch,
        budget=args.budget,
        seeds=args.seeds,
        backbone=backbone,
        weights=weights,
        image_size=args.image_size,
        work_dir=args.work_dir,
        out=args.out,
        cold_start=args.cold_start,
        devices=args.devices,
        num_nodes=args.num_nodes,
        dist_strategy=args.dist_strategy,
        audit_share=args.audit_share,
    )
    results = simulate(cfg)
    print(format_table(results))
    if args.out:
        print(f"Wrote {args.out} and {Path(args.out).with_suffix('.png')}")
    return 0


def _check_labels_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m app check-labels",
        description="Find the labels that are likely wrong in a labeled folder (root/<class>/<image>) or CSV.",
    )
    p.add_argument("--data", required=True, help="class-folder directory (root/<class>/<image>) or CSV of path,label")
    p.add_argument("--backbone", help="timm architecture (default: the one --weights names, else EfficientNet-Lite0)")
    p.add_argument("--weights", help="local model file or folder for --backbone (as for simulate)")
    p.add_argument("--image-size", type=int, help="input size in pixels (default: the backbone's own)")
    p.add_argument("--work-dir", help="keep the imported images and embeddings here to reuse them next time")
    p.add_argument("--out", default="suspects.csv", help="CSV to write: path,label,suggested,score (%(default)s)")
    p.add_argument("--top", type=int, help="write at most this many rows (default: every suspected image)")
    return p


def _check_labels(argv: Sequence[str]) -> int:
    from app.engine import folder_check

    args = _check_labels_parser().parse_args(argv)
    if args.top is not None and args.top < 1:
        raise AppError("--top must be at least 1.")
    folder_check.labeled_inputs(args.data)  # bad input ends here, before any weights are loaded
    if not Path(args.out).expanduser().absolute().parent.is_dir():
        raise AppError(f"--out: the folder of '{args.out}' does not exist; create it or write elsewhere.")
    with tempfile.TemporaryDirectory(prefix="alabel-weights-") as tmp:
        arch, weights = args.backbone or "tf_efficientnet_lite0", None
        if args.weights:
            from app.engine.model_import import check_weights_file

            arch, weights = check_weights_file(args.backbone, args.weights, False, Path(tmp))
        settings = folder_check.folder_settings(arch, weights, args.image_size)
        found = folder_check.check_folder(args.data, settings, work_dir=args.work_dir)
    folder_check.write_suspects(args.out, found, args.top)
    print(folder_check.summary(found))
    print(f"Wrote {min(len(found.suspects), args.top or len(found.suspects))} rows to {args.out}")
    return 0


def _serve(argv: Sequence[str]) -> int:
    args = _serve_parser().parse_args(argv)
    if args.space or on_space(os.environ):
        args.space = True
        _as_space(args, os.environ)
    auth = _auth_pairs(args.auth or [], args.auth_file)
    hosting = _hosting(args, os.environ)
    if args.share and not auth and not args.public and not (hosting.private or hosting.crowd):
        raise AppError(
            "--share opens a public link that anyone who has it can use. Add --auth USER:PASS or --auth-file FILE "
            "so people sign in, or --public to let anyone with the link label and export."
        )
    if args.share and not auth:
        print("Public link without sign-in: anyone with the link can label, undo and export.", flush=True)
    from app.ui.server import serve

    serve(
        projects_dir=args.projects_dir,
        host=args.host,
        port=args.port,
        share=args.share,
        auth=auth,
        demo=args.demo,
        behind_proxy=bool(args.space),
        hosting=hosting,
    )
    return 0


def _hosting(args: argparse.Namespace, env: Mapping[str, str]) -> Hosting:
    """How the server is shared: one shared project, private workspaces (the default on a Space), or one folder."""
    from app.engine.workspaces import WorkspaceLimits

    crowd = args.shared_project
    owner = env.get("SPACE_AUTHOR_NAME") if args.space else None
    return Hosting(
        private=bool(args.workspaces or args.space) and not crowd,
        shared_project=crowd,
        limits=WorkspaceLimits.from_env(env),
        host_password=env.get("ALABEL_HOST_PASSWORD") or None,
        host_users=(*args.host_user, *([owner] if owner else [])),
        hf_login=bool(args.space and crowd and env.get("OAUTH_CLIENT_ID")),
    )


def on_space(env: Mapping[str, str]) -> bool:
    """True on a Hugging Face Space (it sets ``SYSTEM=spaces`` and ``SPACE_ID``)."""
    return env.get("SYSTEM") == "spaces" or bool(env.get("SPACE_ID"))


def _as_space(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    """A Space's settings: its address, the demo, sign-in from its secrets (optional: each visitor works in a
    private workspace, or everyone labels the shared project under their own name)."""
    args.host = env.get("GRADIO_SERVER_NAME") or "0.0.0.0"
    try:
        args.port = int(env.get("GRADIO_SERVER_PORT") or 7860)
    except ValueError:
        raise AppError("GRADIO_SERVER_PORT must be a port number, like 7860.") from None
    args.share, args.demo = False, True
    args.auth = [*(args.auth or []), *[item.strip() for item in env.get("ALABEL_AUTH", "").split(",") if item.strip()]]
    args.auth_file = args.auth_file or env.get("ALABEL_AUTH_FILE") or None
    args.public = args.public or env.get("ALABEL_PUBLIC", "").strip().lower() in ("1", "true", "yes")


def _auth_pairs(items: Sequence[str], auth_file: str | None) -> list[tuple[str, str]]:
    """The (user, password) pairs of --auth options and the --auth-file lines (blank lines and # comments skipped)."""
    pairs = [_auth_pair(item, "--auth takes USER:PASS, for example --auth ann:secret.") for item in items]
    if auth_file:
        try:
            lines = Path(auth_file).expanduser().read_text(encoding="utf-8-sig").splitlines()  # BOM: not in a name
        except (OSError, UnicodeDecodeError) as exc:
            raise AppError(f"--auth-file: cannot read '{auth_file}' ({exc}); give a UTF-8 text file.") from exc
        for number, line in enumerate(lines, start=1):
            if line.strip() and not line.lstrip().startswith("#"):
                pairs.append(_auth_pair(line.strip(), f"--auth-file line {number} is not user:password."))
        if not pairs:
            raise AppError(f"--auth-file '{auth_file}' lists no user:password lines.")
    users = [user for user, _ in pairs]
    if len(set(users)) != len(users):
        raise AppError("A user name is given twice in --auth / --auth-file; give each user once.")
    return pairs


def _auth_pair(text: str, message: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user.strip() or not password:
        raise AppError(message)
    return user.strip(), password


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if argv and argv[0] == "simulate":
            return _simulate(argv[1:])
        if argv and argv[0] == "check-labels":
            return _check_labels(argv[1:])
        if argv and argv[0] in PROJECT_COMMANDS:
            return run_project_command(argv, DEFAULT_PROJECTS_DIR)
        if argv and argv[0] == "serve":
            argv = argv[1:]
        return _serve(argv)
    except AppError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
