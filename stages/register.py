"""Stage register: register best.pt's logged model (the log_models stage logged it) as a new version of
charrnn-<corpus>, and give the alias `champion` to the best version with the same split and
evaluation protocol."""

import json

from charrnn import params
from charrnn.atomic import write_json
from charrnn.data.vocab import Vocab
from charrnn.dvc_exp import stage
from charrnn.tracking import registry
from charrnn.tracking.runs import LOGGED_MODELS, PipelineRun, comparability, run_record


@stage
def main():
    p = params.load()
    vocab = Vocab.load("data/prepared/vocab.json")
    evaluation = json.loads(open("metrics/eval.json", encoding="utf-8").read())
    key = comparability(p, vocab)
    with PipelineRun.reopen() as run:
        version = registry.register(run, run_record("best_model_id", LOGGED_MODELS), vocab.corpus, evaluation, key)
        name = registry.model_name(vocab.corpus)
        print(f"registered {name} version {version} (val {evaluation['val_loss']:.4f})")
        champion, _ = registry.promote(run.client, name, key)
    write_json("models/registered.json", {"model": name, "version": version, "champion": champion})


if __name__ == "__main__":
    main()
