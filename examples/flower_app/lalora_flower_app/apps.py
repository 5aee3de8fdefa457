"""The ServerApp and ClientApp of `flwr run`: lalora_lite's Flower adapter, configured by the run config."""

from lalora_lite.flower import make_client_app, make_server_app, server_setup_from_run_config, task_from_run_config

server = make_server_app(server_setup_from_run_config)
client = make_client_app(task_from_run_config)
