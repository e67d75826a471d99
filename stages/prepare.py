"""Stage prepare: build the vocabulary and encode the corpus into a compact id array."""

from pathlib import Path

from charrnn import params
from charrnn.data import corpus
from charrnn.data.prepare import encode_file
from charrnn.dvc_exp import stage

RAW_DIR = "data/raw"
OUT_DIR = Path("data/prepared")


@stage
def main():
    p = params.load()
    source = corpus.resolve(p.corpus)
    raw = corpus.raw_path(source, RAW_DIR)
    vocab, length = encode_file(
        raw,
        OUT_DIR / "encoded.npy",
        source.name,
        corpus.sha256_of(raw),
        source.origin,
        start=source.start,
        end=source.end,
    )
    vocab.save(OUT_DIR / "vocab.json")
    print(f"{source.name}: {length:,} characters, {len(vocab)} distinct, stored as {vocab.dtype.__name__}")


if __name__ == "__main__":
    main()
