"""Stage split: cut the encoded corpus into contiguous train / val / test arrays."""

from pathlib import Path

from charrnn import params
from charrnn.atomic import save_array, write_json
from charrnn.data.batches import load_ids
from charrnn.data.split import split_array
from charrnn.dvc_exp import stage

ENCODED = "data/prepared/encoded.npy"
OUT_DIR = Path("data/split")


@stage
def main():
    p = params.load()
    parts = split_array(load_ids(ENCODED), p)
    for name, part in parts.items():
        save_array(OUT_DIR / f"{name}.npy", part)
    sizes = {f"{name}_chars": len(part) for name, part in parts.items()}
    write_json(OUT_DIR / "split.json", sizes)
    print(", ".join(f"{key} {value:,}" for key, value in sizes.items()))


if __name__ == "__main__":
    main()
