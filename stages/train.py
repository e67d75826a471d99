"""Stage train: fit the char-RNN on the train split, validating on val; checkpoints under models/."""

import numpy as np

from charrnn import params
from charrnn.atomic import write_csv, write_json
from charrnn.errors import exit_on_error
from charrnn.train import train
from charrnn.vocab import Vocab


@exit_on_error
def main():
    p = params.load()
    vocab = Vocab.load("data/prepared/vocab.json")
    train_ids = np.load("data/split/train.npy", mmap_mode="r")
    val_ids = np.load("data/split/val.npy", mmap_mode="r")
    metrics, history = train(p, train_ids, val_ids, vocab, "models")
    write_csv("plots/train/loss.csv", history)
    write_json("metrics/train.json", metrics)
    print(f"best val loss {metrics['best_val_loss']:.4f} at step {metrics['best_step']}, "
          f"{metrics['chars_per_sec']:,.0f} chars/s")


if __name__ == "__main__":
    main()
