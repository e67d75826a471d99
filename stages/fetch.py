"""Stage fetch: put the corpus named in params.yaml at data/raw/<name>.txt, checksum verified."""

from charrnn import params
from charrnn.data import corpus
from charrnn.dvc_exp import stage

RAW_DIR = "data/raw"


@stage
def main():
    p = params.load()
    corpus.fetch(corpus.resolve(p.corpus), RAW_DIR)


if __name__ == "__main__":
    main()
