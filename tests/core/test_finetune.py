"""rerank-ext finetune on tiny checkpoints and a planted corpus: mining, inputs, training, resume."""

from __future__ import annotations

import json
import random

import pytest

from rerank_ext_core.evaluation.dataset import EvalInputError

from rerank_ext_core.finetune import (
    Corpus,
    FinetuneConfig,
    FinetuneInputError,
    MiningSettings,
    TrainingQuery,
    TrainingSettings,
    load_beir_training,
    load_flag_jsonl,
    mine_negatives,
    run_finetune,
    write_flag_jsonl,
)

ANIMALS = ["zebra", "otter", "falcon", "lynx", "heron", "bison", "gecko", "walrus", "koala", "ibex",
           "marten", "tapir", "puffin", "oryx", "civet", "dingo"]


def planted_corpus() -> tuple[list[dict], list[dict], list[tuple[str, str]]]:
    """Each query names an animal; its positive is the one document about that animal."""
    rng = random.Random(0)
    corpus = [{"_id": f"p{i}", "title": "", "text": f"The {a} is an animal; facts about the {a} and its habitat."}
              for i, a in enumerate(ANIMALS)]
    corpus += [{"_id": f"n{i}", "title": "", "text": f"Filler text {i}: where people live, weather, markets and {rng.choice(['rain', 'tax', 'bread'])}."}
               for i in range(40)]
    queries = [{"_id": f"q{i}", "text": f"where does the {a} live"} for i, a in enumerate(ANIMALS)]
    qrels = [(f"q{i}", f"p{i}") for i in range(len(ANIMALS))]
    return corpus, queries, qrels


@pytest.fixture
def beir(tmp_path):
    return write_planted_beir(tmp_path / "beir")


def write_planted_beir(root):
    corpus, queries, qrels = planted_corpus()
    root.mkdir()
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    for name in ("queries.jsonl", "queries_train.jsonl"):
        (root / name).write_text("".join(json.dumps(q) + "\n" for q in queries))
    for name in ("qrels.tsv", "qrels_train.tsv"):
        (root / name).write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in qrels))
    return root


@pytest.fixture(scope="module")
def plain_encoder(tmp_path_factory, minilm_path):
    from tests.checkpoints import build_plain_encoder

    return str(build_plain_encoder(minilm_path, tmp_path_factory.mktemp("plain") / "encoder"))


# --------------------------------------------------------------------------------------- mining
def test_mining_never_returns_a_positive_and_respects_the_window():
    corpus = Corpus([f"d{i}" for i in range(60)], [f"text {i}" for i in range(60)])
    ranking = [f"d{i}" for i in range(60)]
    queries = [TrainingQuery(f"q{i}", f"query {i}", (f"d{i}", f"d{i + 12}")) for i in range(20)]
    settings = MiningSettings(source="hybrid", window=(10, 30), negatives=5, seed=3)
    hits = [(doc_id, 1.0 - rank / 60) for rank, doc_id in enumerate(ranking)]
    groups = mine_negatives(queries, corpus, lambda query, k: hits[:k], settings)
    for query, group in zip(queries, groups):
        assert not set(group.negative_ids) & set(query.positive_ids)
        assert all(10 <= int(doc_id[1:]) + 1 <= 30 for doc_id in group.negative_ids)  # 1-based ranks 10-30
        assert len(set(group.negative_ids)) == 5
        assert group.positives == tuple(corpus.text(i) for i in query.positive_ids)
    again = mine_negatives(queries, corpus, lambda query, k: hits[:k], settings)
    assert [g.negative_ids for g in again] == [g.negative_ids for g in groups]  # seeded


def test_too_few_negatives_says_how_many_and_what_to_change():
    corpus = Corpus([f"d{i}" for i in range(8)], [f"t{i}" for i in range(8)])
    query = TrainingQuery("q7", "query", ("d0",))
    with pytest.raises(FinetuneInputError, match=r"'q7' has only 4 negative\(s\) in ranks 5-8.*train-group-size"):
        mine_negatives([query], corpus, lambda q, k: [(f"d{i}", 0.0) for i in range(k)], MiningSettings(window=(5, 8), negatives=5))


def test_the_teacher_drops_likely_false_negatives():
    corpus = Corpus(["pos", "twin", "far"], ["cats eat fish", "cats eat fish too", "stock markets"])
    query = TrainingQuery("q", "what do cats eat", ("pos",))

    class Teacher:
        def score(self, query, texts):
            return [float(len(set(query.split()) & set(t.split()))) for t in texts]

    hits = [("pos", 3.0), ("twin", 2.0), ("far", 1.0)]
    groups = mine_negatives([query], corpus, lambda q, k: hits[:k],
                            MiningSettings(window=(1, 3), negatives=1, margin=0.5), teacher=Teacher())
    assert groups[0].negative_ids == ("far",)  # "twin" scores like the positive: dropped
    assert groups[0].pos_scores == (2.0,) and groups[0].neg_scores == (0.0,)  # the teacher's, for distillation


# ---------------------------------------------------------------------------------------- inputs
def test_flag_jsonl_reads_what_it_writes(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"query": "q", "pos": ["p"], "neg": ["n1", "n2"], "prompt": "Judge:",
                                "pos_scores": [1.0], "neg_scores": [0.1, 0.2]}) + "\n")
    groups = load_flag_jsonl(path)
    assert load_flag_jsonl(write_flag_jsonl(groups, tmp_path / "copy.jsonl")) == groups


@pytest.mark.parametrize(("line", "message"), [
    ("", r"train.jsonl:2: the line is empty"),
    ("{not json", r"train.jsonl:2: not valid JSON"),
    (json.dumps({"query": "q", "pos": [], "neg": ["n"]}), r"train.jsonl:2: the query has no positive"),
    (json.dumps({"query": "", "pos": ["p"], "neg": []}), r"train.jsonl:2: the field 'query'"),
    (json.dumps({"query": "q", "pos": ["p"], "neg": ["n"], "neg_scores": [1, 2]}), r"train.jsonl:2: 'neg_scores' must be a list of 1"),
    (json.dumps(["q", "p"]), r"train.jsonl:2: expected a JSON object"),
])
def test_bad_flag_jsonl_lines_are_named(tmp_path, line, message):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"query": "q", "pos": ["p"], "neg": ["n"]}) + "\n" + line + "\n")
    with pytest.raises(FinetuneInputError, match=message):
        load_flag_jsonl(path)


def test_beir_query_without_positive_and_unknown_positive_are_named(beir):
    (beir / "qrels_train.tsv").write_text("q0\tp0\t0\n")
    with pytest.raises(EvalInputError, match="'q0' has no positive"):
        load_beir_training(beir)
    (beir / "qrels_train.tsv").write_text("q0\tghost-doc\t1\n")
    with pytest.raises(EvalInputError, match="'ghost-doc', which is not in"):
        load_beir_training(beir)


def _config(beir, base, out, **overrides) -> FinetuneConfig:
    training = overrides.pop("training", TrainingSettings(
        max_steps=12, batch_size=4, learning_rate=5e-4, eval_steps=4, max_length=48, precision="fp32", progress=False,
    ))
    mining = overrides.pop("mining", MiningSettings(source="bm25", window=(2, 20), negatives=3))
    return FinetuneConfig(
        output_dir=out, base_model=base, beir_dir=beir, embedding_model=None, train_group_size=4,
        mining=mining, training=training, dev_fraction=0.25, dev_candidates=10, evaluate=False, **overrides,
    )


def test_refused_inputs_leave_no_output_folder(beir, plain_encoder, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(FinetuneInputError, match="ranks 2-3"):
        run_finetune(_config(beir, plain_encoder, out, mining=MiningSettings(source="bm25", window=(2, 3), negatives=3)))
    assert not out.exists() and not list(tmp_path.glob(".out.*"))
    from rerank_ext_core._models import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="not-cached-model"):
        run_finetune(_config(beir, "someone/not-cached-model", out))
    assert not out.exists()


@pytest.mark.parametrize(("device", "message"), [
    ("mps", "MPS is not available here"),  # a device this machine lacks
    ("cuda:1", "CUDA_VISIBLE_DEVICES=1 and --device cuda"),  # the trainers train on the first visible GPU
])
def test_a_device_training_cannot_use_is_refused_before_anything_is_written(beir, plain_encoder, tmp_path, capsys,
                                                                             device, message):
    import torch

    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    from rerank_ext_core.cli import EXIT_BAD_INPUT, main

    out = tmp_path / "out"
    assert main(["finetune", "--beir", str(beir), "--base-model", plain_encoder, "-o", str(out),
                 "--device", device, "-q"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert f"device={device!r}" in err and message in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_an_output_folder_holding_another_model_needs_overwrite(beir, plain_encoder, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text("{}")
    with pytest.raises(FinetuneInputError, match="another model.*--overwrite"):
        run_finetune(_config(beir, plain_encoder, out))
    assert (out / "config.json").read_text() == "{}"  # untouched


# -------------------------------------------------------------------------------------- training
def test_cross_encoder_training_lowers_the_loss_and_loads_in_both_adapters(beir, plain_encoder, tmp_path):
    import langchain_rerank_ext as lc
    import llamaindex_rerank_ext as li
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, TextNode

    out = tmp_path / "ce"
    training = TrainingSettings(max_steps=60, batch_size=8, learning_rate=2e-3, eval_steps=20, max_length=48,
                                precision="fp32", progress=False)
    report = run_finetune(_config(beir, plain_encoder, out, training=training, export_negatives=tmp_path / "mined.jsonl"))
    card = (out / "README.md").read_text()
    assert "rerank-ext-finetune" in card and "Learning curve" in card
    assert json.loads((out / "finetune.json").read_text())["dev"] == report.dev
    assert len(load_flag_jsonl(tmp_path / "mined.jsonl")[0].negatives) == 3
    losses = [e["loss"] for e in report.training.learning_curve if "loss" in e]
    assert report.training.steps == 60 and len(losses) >= 6
    assert sum(losses[-3:]) < sum(losses[:3])  # training lowered the loss
    assert not list(tmp_path.glob(".ce.*"))  # no work or staging folder left behind
    stages = report.stage_seconds
    assert list(stages) == ["data", "mining", "training", "dev evaluation", "total"]
    assert stages["training"] > 0 and stages["total"] >= sum(v for k, v in stages.items() if k != "total") - 0.5
    assert f"training {stages['training']:.0f} s" in card

    texts = ["Filler text 3: where people live, weather, markets and rain.",
             "The zebra is an animal; facts about the zebra and its habitat.", "Markets and tax."]
    query = "where does the zebra live"
    docs = lc.CrossEncoderReranker(model=str(out)).compress_documents([Document(page_content=t) for t in texts], query)
    assert docs[0].page_content == texts[1]
    nodes = li.CrossEncoderReranker(model=str(out)).postprocess_nodes(
        [NodeWithScore(node=TextNode(text=t), score=0.0) for t in texts], query_str=query)
    assert nodes[0].node.get_content() == texts[1]


def test_resume_continues_from_the_saved_step(beir, plain_encoder, tmp_path, monkeypatch):
    from rerank_ext_core.finetune.data import load_beir_training
    from rerank_ext_core.finetune.retrievers import corpus_retriever
    from rerank_ext_core.finetune.training import train

    corpus, queries = load_beir_training(beir)
    retrieve = corpus_retriever(corpus, "bm25", embedding_model=None, depth=20)
    groups = mine_negatives(queries, corpus, retrieve, MiningSettings(source="bm25", window=(2, 20), negatives=3))
    dev = [(q.text, [corpus.text(i) for i in q.positive_ids], [corpus.text(i) for i, _ in retrieve(q.text, 10)]) for q in queries[:4]]
    settings = dict(batch_size=4, learning_rate=5e-4, eval_steps=2, max_length=48, precision="fp32", progress=False)
    work = tmp_path / "work"
    train(groups, dev, base_model=plain_encoder, work_dir=work, settings=TrainingSettings(max_steps=4, **settings), train_group_size=4)
    assert (work / "checkpoint-4").is_dir()
    import transformers

    steps_run: list[int] = []
    original = transformers.Trainer.training_step

    def counting(self, *args, **kwargs):
        steps_run.append(self.state.global_step)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Trainer, "training_step", counting)
    _, result = train(groups, dev, base_model=plain_encoder, work_dir=work,
                      settings=TrainingSettings(max_steps=6, **settings), train_group_size=4, resume=True)
    assert result.steps == 6
    assert steps_run == [4, 5]  # it went on from step 4 and ran two steps: it did not start over


def test_colbert_training_through_the_command_loads_in_both_adapters(beir, plain_encoder, tmp_path):
    from rerank_ext_core.cli import EXIT_OK, main

    out = tmp_path / "colbert"
    assert main(["finetune", "--beir", str(beir), "--base-model", plain_encoder, "--embedding-model", plain_encoder,
                 "-o", str(out), "--kind", "colbert", "--negatives-from", "bm25", "--negative-window", "2", "20",
                 "--max-steps", "8", "--batch-size", "4", "--learning-rate", "5e-4", "--eval-steps", "4",
                 "--max-length", "48", "--precision", "fp32", "--dev-fraction", "0.25", "--no-eval", "-q"]) == EXIT_OK
    assert json.loads((out / "finetune.json").read_text())["training"]["steps"] == 8
    import langchain_rerank_ext as lc
    import llamaindex_rerank_ext as li
    from langchain_core.documents import Document

    texts = ["Filler text about rain.", "The zebra is an animal; facts about the zebra and its habitat."]
    assert lc.ColBERTReranker(model=str(out)).compress_documents(
        [Document(page_content=t) for t in texts], "where does the zebra live")[0].page_content == texts[1]
    assert li.ColBERTReranker(model=str(out)).scorer.score("zebra habitat", texts)[1] > 0


def test_chroma_collection_input_mines_from_the_collection(plain_encoder, tmp_path):
    chromadb = pytest.importorskip("chromadb")
    from rerank_ext_core.embedding import ChromaEmbeddingFunction
    from tests.hybrid_fixtures import HashEmbedder

    corpus, queries, qrels = planted_corpus()
    collection = chromadb.PersistentClient(path=str(tmp_path / "db")).create_collection(
        "docs", embedding_function=ChromaEmbeddingFunction(HashEmbedder()))
    collection.add(ids=[d["_id"] for d in corpus], documents=[d["text"] for d in corpus])
    lines = tmp_path / "train.jsonl"
    text_of = {q["_id"]: q["text"] for q in queries}
    lines.write_text("".join(json.dumps({"query": text_of[q], "pos_ids": [d]}) + "\n" for q, d in qrels))
    config = FinetuneConfig(
        output_dir=tmp_path / "out", base_model=plain_encoder, chroma_path=tmp_path / "db", collection="docs",
        chroma_queries=lines, query_embedder=HashEmbedder(), train_group_size=3, mining=MiningSettings(source="bm25", window=(2, 20), negatives=2),
        training=TrainingSettings(max_steps=4, batch_size=4, eval_steps=2, max_length=48, precision="fp32", progress=False),
        dev_fraction=0.25, dev_candidates=10, export_negatives=tmp_path / "mined.jsonl",
    )
    report = run_finetune(config)
    assert report.training.steps == 4 and (tmp_path / "out" / "config.json").exists()
    texts = set(collection.get(include=["documents"])["documents"])
    for group in load_flag_jsonl(tmp_path / "mined.jsonl"):
        assert set(group.negatives) <= texts and not set(group.negatives) & set(group.positives)

    lines.write_text(json.dumps({"query": "q", "pos_ids": ["p0"]}) + "\n" + json.dumps({"query": "q", "pos_ids": ["ghost"]}) + "\n")
    import dataclasses

    with pytest.raises(FinetuneInputError, match=r"train.jsonl:2: the positive id 'ghost' is not in the collection"):
        run_finetune(dataclasses.replace(config, output_dir=tmp_path / "second"))
    assert not (tmp_path / "second").exists()


# ------------------------------------------------------------------ starting from a trained reranker
@pytest.fixture(scope="module")
def trained_reranker(tmp_path_factory, plain_encoder):
    """A small cross-encoder trained here first: what a user's bge-reranker-base is to this command."""
    root = tmp_path_factory.mktemp("trained")
    training = TrainingSettings(max_steps=60, batch_size=8, learning_rate=2e-3, eval_steps=20, max_length=48,
                                precision="fp32", progress=False)
    run_finetune(_config(write_planted_beir(root / "beir"), plain_encoder, root / "reranker", training=training))
    return str(root / "reranker")


def test_fine_tuning_a_trained_reranker_keeps_its_head_and_distils_from_a_teacher(trained_reranker, beir, tmp_path):
    from rerank_ext_core.cross_encoder import CrossEncoderScorer

    out = tmp_path / "again"
    training = TrainingSettings(loss="margin-mse", max_steps=8, batch_size=4, learning_rate=1e-5, eval_steps=4,
                                max_length=48, precision="fp32", progress=False)
    report = run_finetune(_config(beir, trained_reranker, out, training=training,
                                  teacher=f"cross-encoder:{trained_reranker}"))
    # The trained head was loaded, not re-initialised: the start model already ranks the planted
    # positives first on dev (an untrained head would be near random on 10 candidates).
    assert report.dev["base"] > 0.9
    assert report.dev["finetuned"] > 0.9
    card = json.loads((out / "finetune.json").read_text())
    assert card["settings"]["teacher"] == f"cross-encoder:{trained_reranker}"
    assert set(card["first_stage_weights"]) == {"base", "finetuned"}
    scorer = CrossEncoderScorer(str(out), max_length=64)
    query = "where does the otter live"
    scores = scorer.score(query, ["Markets and tax.", "The otter is an animal; facts about the otter and its habitat."])
    assert scores[1] > scores[0]


def test_margin_mse_without_teacher_scores_is_refused_by_name(beir, plain_encoder, tmp_path):
    training = TrainingSettings(loss="margin-mse", max_steps=2, batch_size=4, max_length=48, precision="fp32", progress=False)
    with pytest.raises(FinetuneInputError, match=r"margin-mse.*--teacher"):
        run_finetune(_config(beir, plain_encoder, tmp_path / "out", training=training))
    assert not (tmp_path / "out").exists()


def test_a_margin_without_a_teacher_is_refused(beir, plain_encoder, tmp_path):
    mining = MiningSettings(source="bm25", window=(2, 20), negatives=3, margin=0.1)
    with pytest.raises(ValueError, match="needs a teacher"):
        run_finetune(_config(beir, plain_encoder, tmp_path / "out", mining=mining))


def test_the_blend_weight_is_chosen_on_dev():
    from rerank_ext_core.finetune.data import DevQuery
    from rerank_ext_core.finetune.runner import _best_weight, _dev_ndcg

    # The first stage ranks the positive 2nd; the reranker alone puts it last.
    dev = [DevQuery("q", ["pos"], ["a", "pos", "b", "c"], [1.0, 0.9, 0.2, 0.1])]
    weak = [[0.9, 0.0, 0.8, 0.7]]
    weight, ndcg = _best_weight(dev, weak)
    assert weight > 0 and ndcg == pytest.approx(_dev_ndcg(dev, weak, weight)) and ndcg > _dev_ndcg(dev, weak)
    # A reranker that puts the positive first needs no blend.
    strong = [[0.1, 0.9, 0.2, 0.3]]
    assert _best_weight(dev, strong) == (0.0, 1.0)
    # Candidates without a first-stage ranking (FlagEmbedding JSONL): no blend is tried.
    assert _best_weight([dev[0]._replace(first_stage_scores=None)], weak)[0] == 0.0


def test_every_recipe_sets_the_same_options():
    from rerank_ext_core.finetune.training import GPU_RECIPES, RECIPES

    # The command reads each option from the kind's recipe: one missing key is a KeyError there.
    options = {(device, kind): sorted(recipe) for device, recipes in (("cpu", RECIPES), ("cuda", GPU_RECIPES))
               for kind, recipe in recipes.items()}
    assert len({tuple(keys) for keys in options.values()}) == 1, options
    assert set(RECIPES) == set(GPU_RECIPES)


def test_the_command_fills_unset_options_from_the_kinds_recipe(tmp_path, minilm_path):
    from rerank_ext_core.cli import build_parser
    from rerank_ext_core.finetune.command import recipe_for
    from rerank_ext_core.finetune.training import RECIPES

    def recipe(*extra):
        return recipe_for(build_parser().parse_args(["finetune", "--base-model", "m", "-o", "out", *extra]))

    colbert = recipe("--beir", "x", "--kind", "colbert")
    assert {k: colbert[k] for k in RECIPES["colbert"]} == RECIPES["colbert"] and colbert["teacher"] is None
    cross = recipe("--beir", "x", "--embedding-model", minilm_path)
    assert cross["loss"] == RECIPES["cross-encoder"]["loss"] == "lambda" and cross["teacher"] is None
    distilled = recipe("--beir", "x", "--loss", "margin-mse", "--teacher", f"colbert:{minilm_path}")
    assert distilled["loss"] == "margin-mse" and distilled["teacher"] == f"colbert:{minilm_path}"
    assert recipe("--beir", "x", "--epochs", "3")["epochs"] == 3.0
    from rerank_ext_core.finetune.training import GPU_RECIPES

    on_gpu = recipe("--beir", "x", "--device", "cuda", "--kind", "colbert")
    assert {k: on_gpu[k] for k in GPU_RECIPES["colbert"]} == GPU_RECIPES["colbert"] != RECIPES["colbert"]
    assert recipe("--beir", "x", "--device", "cuda:0", "--epochs", "3")["epochs"] == 3.0
    plain, scored = tmp_path / "plain.jsonl", tmp_path / "scored.jsonl"
    plain.write_text('{"query": "q", "pos": ["p"], "neg": ["n"]}\n')
    scored.write_text('{"query": "q", "pos": ["p"], "neg": ["n"], "pos_scores": [2.0], "neg_scores": [0.5]}\n')
    assert recipe("--flag-jsonl", str(plain))["loss"] == "lambda"
    assert recipe("--flag-jsonl", str(scored))["loss"] == "margin-mse"
    assert recipe("--flag-jsonl", str(scored))["teacher"] is None
