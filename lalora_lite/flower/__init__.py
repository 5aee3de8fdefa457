"""Scale-out on Flower (``pip install lalora-lite[flower]``): the simulator's client and server as
Flower apps, giving the same numbers as :func:`~lalora_lite.federated.run_federated`.

The core never imports this module (nor ``flwr``). What is shared with the simulator, so that the
two runtimes agree bit for bit on a CPU:

* :func:`~lalora_lite.federated.train_client`: a client's whole round (ledger, seeding by
  ``(seed, round, client)``, :func:`~lalora_lite.training.local_update`, what it uploads);
* :func:`~lalora_lite.federated.round_clients`: the server's seeded choice of clients (budget-aware);
* :func:`~lalora_lite.federated.aggregate` (FedAvg in increasing client order), the history row
  and the :class:`~lalora_lite.checkpoint.Checkpoint` format (a Flower run's checkpoint can be
  read, and resumed, by the simulator and vice versa).

Flower's own DP is update-level (clipping whole client updates) and its Opacus example restarts
the accountant every round; here each client keeps a sample-level :class:`PrivacyLedger` across
rounds: in ``Context.state`` (one run, in memory), reported to the server with every reply (the
server checkpoint holds all ledgers) and, in a deployment, in ``state-dir`` on the client's own
disk with its last reply, so that neither a SuperNode restart nor a lost reply resets or
double-spends its budget. A client whose budget is spent trains no more steps.

Messages (all keys are strings):

* QUERY: the client answers ``partition-id`` (the server maps partitions to Flower node ids);
* TRAIN: ``arrays`` = the global LoRA factors and head, ``config`` = ``fed-config`` (the run's
  :class:`FederatedConfig` as JSON), ``round-index``, ``partition-id``, ``num-clients``,
  ``ledger-steps`` (the server's copy); the reply holds ``arrays`` (the upload, possibly empty) and
  ``metrics`` (``partition-id``, ``steps``, ``train-loss``, ``num-examples``, ``epsilon``,
  ``ledger-steps``).
"""

from .client import TaskLoader, make_client_app
from .run_config import config_from_run_config, server_setup_from_run_config, task_from_run_config
from .server import SeededFedAvg, ServerSetup, make_server_app

__all__ = [
    "SeededFedAvg",
    "ServerSetup",
    "TaskLoader",
    "config_from_run_config",
    "make_client_app",
    "make_server_app",
    "server_setup_from_run_config",
    "task_from_run_config",
]
