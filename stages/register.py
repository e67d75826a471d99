"""Stage register: register best.pt's logged model (the train stage logged it) as a new version of
charrnn-<corpus>, and give the alias `champion` to the best version with the same split and
evaluation protocol."""

import json

from charrnn import params, registry, tracking
from charrnn.atomic import write_json
from charrnn.errors import exit_on_error
from charrnn.vocab import Vocab


@exit_on_error
def main():
    p = params.load()
    vocab = Vocab.load("data/prepared/vocab.json")
    evaluation = json.loads(open("metrics/eval.json", encoding="utf-8").read())
    key = tracking.comparability(p, vocab)
    with tracking.PipelineRun.reopen() as run:
        version = registry.register(run, tracking.run_record("best_model_id"), vocab.corpus, evaluation, key)
        name = registry.model_name(vocab.corpus)
        print(f"registered {name} version {version} (val {evaluation['val_loss']:.4f})")
        champion, _ = registry.promote(run.client, name, key)
    write_json("models/registered.json", {"model": name, "version": version, "champion": champion})


if __name__ == "__main__":
    main()
