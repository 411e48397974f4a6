"""``ponder results build|export|import``: the committed results data and docs/RESULTS.md.

``export`` writes a results database's runs, pools and cells as compact JSON lines
(``results/*.jsonl.gz``, committed); ``import`` puts such files into a database, so a long
run split over several sittings resumes from the committed data (run the same ``ponder
eval`` command again: only what is missing runs); ``build`` regenerates docs/RESULTS.md and
its plots from the committed files, without a model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ponder.cli.common import add_command_group


def add_parsers(sub: Any) -> None:
    actions = add_command_group(
        sub,
        "results",
        "export/import results data; rebuild docs/RESULTS.md from it",
        __doc__,
        "action",
        "ACTION",
    )
    b = actions.add_parser("build", help="docs/RESULTS.md and its plots from results/*.jsonl.gz")
    b.add_argument("--data", default="results", help="folder of exported results")
    b.add_argument("--out", default="docs/RESULTS.md")
    b.add_argument("--images", default="docs/images")
    b.add_argument("--subsets", type=int, default=200, help="random k-subsets per problem")
    b.add_argument("--seed", type=int, default=0, help="seed of the random subsets")
    b.add_argument("--rules", default=None, help="pool rules (default: all)")
    b.add_argument(
        "--image-prefix",
        default="results-",
        help="start of the plots' file names (another page built into the same folder "
        "needs its own)",
    )
    b.set_defaults(func=_build)
    e = actions.add_parser("export", help="a results database as compact JSON lines")
    e.add_argument("db", help="results database")
    e.add_argument("out", help="output file, e.g. results/arithmetic.jsonl.gz")
    e.add_argument("--runs", default="", help="only these run ids (comma list)")
    e.set_defaults(func=_export)
    i = actions.add_parser("import", help="exported files into a results database")
    i.add_argument("db", help="results database (created if missing)")
    i.add_argument("files", nargs="+", help="exported .jsonl.gz files")
    i.set_defaults(func=_import)


def _build(args: argparse.Namespace) -> int:
    from ponder.evals.export import load_results
    from ponder.evals.results import build

    data = Path(args.data)
    files = sorted(data.glob("*.jsonl.gz"))
    if not files:
        raise ValueError(f"no *.jsonl.gz files in {data}; write them with `ponder results export`")
    intro_path = data / "INTRO.md"
    intro = intro_path.read_text() if intro_path.is_file() else ""
    store = load_results(files)
    start = time.monotonic()

    def progress(text: str) -> None:
        print(f"{time.monotonic() - start:6.0f}s  {text}", file=sys.stderr, flush=True)

    build(
        store,
        Path(args.out),
        Path(args.images),
        intro,
        args.subsets,
        args.seed,
        args.rules,
        args.image_prefix,
        progress,
    )
    print(f"wrote {args.out} and its plots in {args.images} from {len(files)} file(s)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from ponder.evals.export import export_results
    from ponder.evals.store import Store

    if not Path(args.db).is_file():
        raise ValueError(f"no results database at {args.db}")
    runs = [r for r in args.runs.split(",") if r] or None
    with Store(args.db) as store:
        counts = export_results(store, args.out, runs)
    print(f"wrote {counts} to {args.out}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from ponder.evals.export import import_results
    from ponder.evals.store import Store

    missing = [f for f in args.files if not Path(f).is_file()]
    if missing:
        raise ValueError(f"no such file: {', '.join(missing)}")
    with Store(args.db) as store:
        counts = import_results(args.files, store)
    print(f"read {counts} into {args.db}")
    return 0
