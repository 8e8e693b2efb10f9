"""LlamaIndex node postprocessors and retrievers built on rerank_ext_core."""

__all__: list[str] = []
