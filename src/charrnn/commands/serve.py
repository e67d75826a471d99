"""`charrnn serve`: a registered model (the champion by default) served on this machine until Ctrl-C,
over MLflow's scoring server (/invocations, /ping), behind charrnn's door: bounded bodies, no stack
traces in answers, Host headers of this machine alone on loopback."""

import mlflow
import uvicorn
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import scoring_server
from starlette.middleware.trustedhost import TrustedHostMiddleware

from charrnn.commands.hosts import allowed_hosts, link_host, listen, warn_if_exposed
from charrnn.errors import CharRNNError
from charrnn.servers import Guarded
from charrnn.tracking.model_uris import version_of
from charrnn.tracking.store import connect, redacted, scrubbed, tracking_uri


def serve(model_uri, host, port):
    listener = listen(host, port, model_uri)
    port = listener.getsockname()[1]
    connect()
    try:
        model = mlflow.pyfunc.load_model(model_uri)
        which = version_of(model_uri)
    except MlflowException as err:
        listener.close()
        raise CharRNNError(
            f"cannot load {model_uri} from {redacted(tracking_uri())}: {scrubbed(err.message)[:200]}"
        ) from None
    warn_if_exposed(host, port, "can make this machine's CPU write text with the model", "the model")
    print(f"charrnn serve: {which} at http://{link_host(host)}:{port}/invocations (Ctrl-C stops it)", flush=True)
    app = TrustedHostMiddleware(Guarded(scoring_server.init(model)), allowed_hosts=allowed_hosts(host))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2))
    server.run(sockets=[listener])
