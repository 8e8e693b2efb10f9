"""``python -m rerank_ext_core.eval DATASET_DIR [options]``: the same as ``rerank-ext eval``."""

import sys

from rerank_ext_core import cli

if __name__ == "__main__":
    sys.exit(cli.main(["eval", *sys.argv[1:]]))
