"""Our overhead over the raw library call, measured without timing noise.

The model call is the same in ours and in the raw library call (one ``CrossEncoder.predict`` or
``FlagReranker.compute_score`` over the same pairs), so our overhead is the time spent around it:
building the pairs, sorting, and converting nodes/documents. This script times that part alone
(the scorer replaced by a zero-cost one) and the raw model call on the same 100 SciFact
candidates, in one run, and prints the ratio per adapter.

    python benchmarks/bench_overhead.py [--queries 3] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common  # noqa: E402


class _FreeScorer:
    def score(self, query, texts):
        return [float(len(text) % 7) for text in texts]


def _per_call_ms(call, repeats: int) -> float:
    call()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats * 1000


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    _common.set_threads()

    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    from sentence_transformers import CrossEncoder

    import langchain_rerank_ext
    import llamaindex_rerank_ext
    from rerank_ext_core.cross_encoder import CrossEncoderScorer

    candidates = _common.load_candidates(args.queries)
    with tempfile.TemporaryDirectory(prefix="rerank-ext-overhead-") as tmp:
        checkpoint = str(_common.build_cross_encoder_checkpoints(Path(tmp))["minilm-l6"])
        raw = CrossEncoder(checkpoint, device="cpu", max_length=512)
        ours_li = llamaindex_rerank_ext.CrossEncoderReranker(model=checkpoint, device="cpu")
        ours_lc = langchain_rerank_ext.CrossEncoderReranker(model=checkpoint, device="cpu")
        core = CrossEncoderScorer(checkpoint, backend="sentence-transformers", device="cpu")
        ours_li._scorer = ours_lc._scorer = _FreeScorer()
        core._predict_logits = lambda pairs: np.zeros(len(pairs))

        rows = []
        for query, texts in candidates:
            nodes = [NodeWithScore(node=TextNode(text=t), score=1.0) for t in texts]
            documents = [Document(page_content=t) for t in texts]
            model_ms = _per_call_ms(lambda: raw.predict([(query, t) for t in texts], batch_size=32, show_progress_bar=False), 1)
            around = {
                "core (pairs, sigmoid, sort)": _per_call_ms(lambda: core.score(query, texts), 200),
                "LlamaIndex adapter + core": _per_call_ms(
                    lambda: ours_li.postprocess_nodes(nodes, query_bundle=QueryBundle(query)), 200
                ) + _per_call_ms(lambda: core.score(query, texts), 200),
                "LangChain adapter + core": _per_call_ms(lambda: ours_lc.compress_documents(documents, query), 200)
                + _per_call_ms(lambda: core.score(query, texts), 200),
            }
            rows.append((model_ms, around))

    model_ms = float(np.median([r[0] for r in rows]))
    lines = [
        "### Overhead around the model call (MiniLM-L6 shape, 100 candidates per query)",
        "",
        f"Raw `CrossEncoder.predict` over the 100 pairs: {model_ms:.0f} ms per query (median of {len(rows)}).",
        "",
        "| our code around the same call | ms per query | overhead |",
        "|---|---:|---:|",
    ]
    for name in rows[0][1]:
        ms = float(np.median([r[1][name] for r in rows]))
        lines.append(f"| {name} | {ms:.3f} | {ms / model_ms * 100:.3f} % |")
    lines += ["", "Target: < 5 %. The FlagEmbedding backend wraps `FlagReranker.compute_score` the same way.", ""]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
