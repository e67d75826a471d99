"""What the play page offers and how it gets it: the registered versions of every charrnn-<corpus>
model (the champion first), the workspace's checkpoints (models/best.pt and the kept ones), the kept
checkpoints of the run a model came from, and each model loaded once.

A request names a model only by an id this catalogue gave: a registry URI of a charrnn model, a
logged model's URI, or one of the workspace's checkpoint files. Nothing else is ever opened.
"""

import math
import os
import re
import threading
from collections import OrderedDict
from pathlib import Path

from mlflow.exceptions import MlflowException

from charrnn.core import checkpoint
from charrnn.core.model import shape
from charrnn.errors import CharRNNError
from charrnn.tracking import model_uris, registry, store

MODELS = Path("models")
REGISTERED = re.compile(r"models:/(charrnn-[^/@']+)(?:/(\d+)|@([\w-]+))")
LOGGED = re.compile(r"models:/(m-[0-9a-f]+)")
CACHED_MODELS = 16  # models kept loaded (a 2x512 LSTM is ~13 MB)


def bits(val_loss):
    return None if val_loss is None else val_loss / math.log(2)


class Catalogue:
    """The models of the project in the current folder and of its MLflow store."""

    def __init__(self, root):
        self.root = Path(root)
        self._loaded = OrderedDict()  # key: (model, vocab, facts)
        self._payloads = {}  # (path, mtime, size): the facts of a workspace checkpoint
        self._lock = threading.Lock()
        self._client = None

    @property
    def client(self):
        """The MLflow store's client, or None where the project has none yet (nothing is created)."""
        if self._client is None:
            if not os.environ.get("MLFLOW_TRACKING_URI") and not (store.local_store() / "mlflow.db").is_file():
                return None
            self._client = store.connect()
        return self._client

    # ---- what the page lists

    def listing(self):
        """{"registered": [...], "checkpoints": [...], "problem"}: each an {"id", "label", "group"} the page
        offers; a store it cannot read leaves the workspace's checkpoints on offer and says why."""
        try:
            registered, problem = self.registered(), None
        except (CharRNNError, MlflowException) as err:
            registered, problem = [], f"the registry cannot be read: {store.scrubbed(str(err)).splitlines()[0][:300]}"
        return {"registered": registered, "checkpoints": self.workspace(), "problem": problem}

    def registered(self):
        """Every version of every charrnn-<corpus> registered model: per model its champion first (by
        alias), then its versions newest first, each with its val bits per character."""
        client = self.client
        if client is None:
            return []
        found = []
        models = client.search_registered_models(filter_string="name LIKE 'charrnn-%'")
        for model in sorted((m for m in models if REGISTERED.fullmatch(f"models:/{m.name}/1")), key=lambda m: m.name):
            versions = sorted(client.search_model_versions(f"name='{model.name}'"), key=lambda v: -int(v.version))
            by_number = {str(v.version): v for v in versions}
            for alias, number in sorted((model.aliases or {}).items(), key=lambda item: item[0] != "champion"):
                if str(number) in by_number:
                    found.append(self._version_entry(model.name, by_number[str(number)], f"@{alias}"))
            found += [self._version_entry(model.name, v) for v in versions]
        return found

    @staticmethod
    def _version_entry(name, version, alias=None):
        val_loss = version.tags.get("val_loss")
        score = _score(float(val_loss) if registry.usable(val_loss) else None)
        if alias:
            return {
                "id": f"models:/{name}{alias}",
                "label": f"{name} {alias} (version {version.version}, {score})",
                "group": name,
            }
        return {
            "id": f"models:/{name}/{version.version}",
            "label": f"{name} version {version.version} ({score})",
            "group": name,
        }

    def workspace(self):
        """models/best.pt, then the kept checkpoints by step."""
        entries = []
        for path in self._workspace_files():
            facts = self._facts(path)
            if facts is None:
                continue  # unreadable or not a checkpoint: not offered
            entries.append(
                {
                    "id": path.as_posix(),
                    "label": f"{path.as_posix()} ({_described(facts)})",
                    "group": "this workspace",
                    "step": facts["step"],
                }
            )
        return sorted(entries, key=lambda entry: (entry["id"] != (MODELS / "best.pt").as_posix(), entry["step"] or 0))

    def _workspace_files(self):
        files = [self.root / MODELS / "best.pt", *(self.root / MODELS / "checkpoints").glob("*.pt")]
        return [path.relative_to(self.root) for path in files if path.is_file()]

    def _stamp(self, path):
        """(path, mtime, size) of a workspace checkpoint: its identity until it is rewritten; None once gone
        (a new training run)."""
        try:
            stat = (self.root / path).stat()
        except OSError:
            return None
        return str(path), stat.st_mtime_ns, stat.st_size

    def _facts(self, path):
        key = self._stamp(path)
        if key is None:
            return None
        if key not in self._payloads:
            try:
                self._payloads[key] = _facts_of(checkpoint.load(self.root / path))
            except (CharRNNError, KeyError, TypeError):
                self._payloads[key] = None
        return self._payloads[key]

    def learning(self, model_id):
        """The kept checkpoints (and best) of the run `model_id` came from, by step: the workspace's
        for a workspace checkpoint, the run's logged models for a registered one."""
        if LOGGED.fullmatch(model_id) or REGISTERED.fullmatch(model_id):
            return self._logged_checkpoints(model_id)
        self._workspace_path(model_id)
        return sorted(self.workspace(), key=lambda entry: (entry["step"] or 0, entry["id"].endswith("best.pt")))

    def _logged_checkpoints(self, model_id):
        client = self._store_client()
        if LOGGED.fullmatch(model_id):
            self._logged_checkpoint(model_id)
        try:
            if LOGGED.fullmatch(model_id):
                run_id = client.get_logged_model(model_id.removeprefix("models:/")).source_run_id
            else:
                run_id = self._version(model_id).run_id
            experiment = client.get_run(run_id).info.experiment_id
            logged = _every_page(
                lambda token: client.search_logged_models(
                    [experiment], filter_string=f"source_run_id = '{run_id}'", page_token=token
                )
            )
        except MlflowException as err:
            raise CharRNNError(f"cannot read the run of {model_id}: {store.scrubbed(err.message)[:200]}") from None
        entries = []
        for model in logged:
            metrics = {m.key: m for m in model.metrics or []}
            val = metrics.get("loss/val")
            step = val.step if val is not None else None
            score = _score(val.value if val is not None else None)
            entries.append(
                {
                    "id": f"models:/{model.model_id}",
                    "label": f"{model.name} ({score})",
                    "step": step,
                    "group": model.name.rsplit("-step", 1)[0],
                }
            )
        return sorted(entries, key=lambda entry: (entry["step"] is None, entry["step"] or 0, entry["label"]))

    # ---- loading

    def load(self, model_id):
        """(model, vocab, facts) of a catalogued id: {"label", "val_loss", "val_bpc", "step", "shape", "corpus"}."""
        key, fetch = self._source(model_id)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
        try:
            model, vocab, payload, _ = model_uris.load(fetch)
        except CharRNNError as err:  # a file's message names it by its path in this project, never absolute
            raise CharRNNError(str(err).replace(f"{self.root}/", "")) from None
        loaded = model, vocab, {**_facts_of(payload), "label": model_id}
        with self._lock:
            self._loaded[key] = loaded
            while len(self._loaded) > CACHED_MODELS:
                self._loaded.popitem(last=False)
        return loaded

    def _source(self, model_id):
        """(cache key, what model_uris.load reads) of a model id; an id the catalogue never gives is refused."""
        if not isinstance(model_id, str):
            raise CharRNNError(f"a model is named by a text (got {model_id!r})")
        if REGISTERED.fullmatch(model_id):
            version = self._version(model_id)
            uri = f"models:/{version.name}/{version.version}"
            return uri, uri
        if LOGGED.fullmatch(model_id):
            self._logged_checkpoint(model_id)
            return model_id, model_id
        path = self._workspace_path(model_id)  # readable a moment ago: its stamp is there
        return self._stamp(path), str(self.root / path)

    def _logged_checkpoint(self, model_id):
        """Refuse a logged model that is not a charrnn checkpoint (log_models tags each with its file)."""
        try:
            logged = self._store_client().get_logged_model(model_id.removeprefix("models:/"))
        except MlflowException:
            logged = None
        if logged is None or "checkpoint" not in (logged.tags or {}):
            raise CharRNNError(f"no charrnn checkpoint {model_id} in the MLflow store")

    def _workspace_path(self, model_id):
        path = Path(model_id)
        if path not in self._workspace_files() or self._facts(path) is None:
            raise CharRNNError(
                f"unknown model {model_id[:200]!r}: choose one the page lists (a registered version, "
                "models/best.pt or a kept checkpoint)"
            )
        return path

    def _version(self, model_id):
        """The registered version a registry id names (an alias resolved now: it may have moved)."""
        name, number, alias = REGISTERED.fullmatch(model_id).groups()
        client = self._store_client()
        try:
            if alias:
                return client.get_model_version_by_alias(name, alias)
            return client.get_model_version(name, number)
        except MlflowException:
            raise CharRNNError(f"no registered model {model_id} in the MLflow store") from None

    def _store_client(self):
        client = self.client
        if client is None:
            raise CharRNNError("the project has no MLflow store yet: run `dvc repro` first")
        return client


def _every_page(search):
    """Every item of an MLflow search, page after page (`search(page_token)`)."""
    found, token = [], None
    while True:
        page = search(token)
        found += list(page)
        token = getattr(page, "token", None)
        if not token:
            return found


def _facts_of(payload):
    config = payload["model_config"]
    val = payload.get("val_loss")
    val = float(val) if isinstance(val, (int, float)) and math.isfinite(val) else None
    return {
        "val_loss": val,
        "val_bpc": bits(val),
        "step": payload.get("step"),
        "shape": shape(config),
        "corpus": payload["vocab"]["corpus"],
    }


def _score(val_loss):
    """A val loss as the page shows every one: in bits per character."""
    return "val loss unknown" if val_loss is None else f"val {bits(val_loss):.3f} bpc"


def _described(facts):
    return f"step {facts['step']}, {_score(facts['val_loss'])}"
