"""A real Flower deployment on one machine: SuperLink + N SuperNodes as separate processes on 127.0.0.1.

It runs the Flower App in examples/flower_app with the Deployment Engine (`flwr run`), kills one
SuperNode with SIGKILL after a chosen round and starts it again with the same node config, lets
the run finish, shuts everything down, and then checks

* the restarted client's ledger on its disk: spent steps before the kill, and after the run
  (a restart must not reset it);
* the final LoRA factors, head and every client's ledger against the in-process simulator
  (`run_federated`, same config, same torch thread count): bit-identical on a CPU.

Usage: .venv/bin/python scripts/flower_loopback.py --workdir /tmp/loopback [--rounds 4 --kill-after 2]
Writes <workdir>/report.json; exit status 0 only if every check passed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import torch

from lalora_lite.sampling import client_schedule

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "examples" / "flower_app"
BIN = Path(sys.executable).parent
SEED, CLIENTS_PER_ROUND = 0, 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {seconds:g} s") from None
            time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--kill-client",
        type=int,
        default=None,
        help="partition whose SuperNode is killed (default: one that trained before the kill, "
        "sits out the next round and trains again later)",
    )
    parser.add_argument("--kill-after", type=int, default=2, help="kill it once this round is checkpointed")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    args = parser.parse_args()
    if not 1 <= args.kill_after < args.rounds:
        parser.error(f"--kill-after must be in [1, {args.rounds - 1}], got {args.kill_after}")
    # the seeded schedule is known in advance: kill a node that is idle until the round after next, so the
    # kill never hits a training client (its reply would be waited for until the reply timeout)
    # (every-round counting: no budget binds, so the server's schedule is the plain seeded draw)
    schedule = client_schedule(SEED, args.rounds, args.clients, CLIENTS_PER_ROUND, args.rounds)
    fits = [
        c
        for c in range(args.clients)
        if any(c in schedule[t] for t in range(args.kill_after))
        and c not in schedule[args.kill_after]
        and any(c in s for s in schedule[args.kill_after + 1 :])
    ]
    if args.kill_client is None and not fits:
        parser.error(
            f"no client trains before round {args.kill_after + 1}, sits it out and trains later "
            f"(schedule {schedule}); change --rounds or --kill-after"
        )
    kill = fits[0] if args.kill_client is None else args.kill_client
    if not 0 <= kill < args.clients:
        parser.error(f"--kill-client must be in [0, {args.clients - 1}], got {kill}")

    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    (work / "flwr-home").mkdir(parents=True)
    link = free_port()  # flwr 1.42: the SuperLink serves its Fleet, Control and Runtime APIs over HTTP on one port
    (work / "flwr-home" / "config.toml").write_text(
        f'[superlink]\ndefault = "loopback"\n\n[superlink.loopback]\naddress = "127.0.0.1:{link}"\ninsecure = true\n'
    )
    # the SuperLink and SuperNodes start helper processes (flower-superexec, flwr-clientapp) by name
    env = {
        **os.environ,
        "FLWR_HOME": str(work / "flwr-home"),
        "PYTHONUNBUFFERED": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    checkpoint = work / "server-checkpoint.pt"
    task_kwargs = {"num_clients": args.clients, "seed": 0, "pretrain_steps": 30}
    run_config = {
        "task-kwargs": json.dumps(task_kwargs),
        "rounds": args.rounds,
        "threads": 1,
        "checkpoint": str(checkpoint),
        "reply-timeout": 120.0,
        "seed": SEED,
        "clients-per-round": CLIENTS_PER_ROUND,
        "count-steps": "every-round",
    }
    procs: dict[str, subprocess.Popen] = {}
    run_id = ""

    def run_status(run: str) -> str:
        listed = subprocess.run(
            [str(BIN / "flwr"), "ls", "loopback", "--run-id", run, "--format", "json"],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=60,
        )
        try:
            return str(json.loads(listed.stdout)["runs"][0]["status"])
        except (ValueError, KeyError, IndexError):
            return "unknown: " + listed.stdout[-300:]

    def start(name: str, cmd: list[str]) -> None:
        log = open(work / f"{name}.log", "a")
        procs[name] = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work, start_new_session=True
        )

    def supernode(i: int) -> None:
        node_config = f'partition-id={i} num-partitions={args.clients} state-dir="{work / f"node{i}"}"'
        start(
            f"node{i}",
            [
                str(BIN / "flower-supernode"),
                "--insecure",
                "--superlink",
                f"127.0.0.1:{link}",
                "--node-config",
                node_config,
                "--port",
                str(ports[i]),
            ],
        )

    report: dict = {
        "clients": args.clients,
        "rounds": args.rounds,
        "schedule": schedule,
        "kill_client": kill,
        "kill_after_round": args.kill_after,
    }
    t0 = time.perf_counter()
    ports = [free_port() for _ in range(args.clients)]
    try:
        start(
            "superlink",
            [
                str(BIN / "flower-superlink"),
                "--insecure",
                "--disable-runtime-dependency-installation",
                "--host",
                "127.0.0.1",
                "--port",
                str(link),
            ],
        )
        wait_for_port(link, 60)
        for i in range(args.clients):
            supernode(i)
        # a TOML file: the key=value form of --run-config cannot carry the JSON of task-kwargs
        (work / "run-config.toml").write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in run_config.items()))
        submitted = subprocess.run(
            [
                str(BIN / "flwr"),
                "run",
                str(APP),
                "loopback",
                "--run-config",
                str(work / "run-config.toml"),
            ],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
        )
        started = re.search(r"Successfully started run (\d+)", submitted.stdout + submitted.stderr)
        if submitted.returncode != 0 or started is None:
            raise RuntimeError(f"flwr run failed: {submitted.stdout}\n{submitted.stderr}")
        run_id = report["run_id"] = started.group(1)

        killed, last_status = False, 0.0
        while True:
            if time.perf_counter() - t0 > args.timeout:
                raise TimeoutError(f"the run did not finish within {args.timeout:g} s; logs in {work}")
            dead = [name for name, p in procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{', '.join(dead)} exited early; see {work}/<name>.log")
            if time.perf_counter() - last_status > 5:  # a ServerApp that failed ends the run early
                last_status = time.perf_counter()
                status = run_status(run_id)
                if status.startswith("finished") and not checkpoint.exists() or "fail" in status:
                    raise RuntimeError(f"the run ended: {status}; ServerApp log in {work}/serverapp.log")
            done = torch.load(checkpoint, weights_only=True)["round"] if checkpoint.exists() else 0
            if not killed and done >= args.kill_after:
                files = sorted((work / f"node{kill}").glob("ledger-*.pt"))
                ledger_file = files[0] if files else None
                before = torch.load(ledger_file, weights_only=True) if ledger_file else None
                procs[f"node{kill}"].send_signal(signal.SIGKILL)
                procs[f"node{kill}"].wait()
                report["killed_at_round"] = done
                report["ledger_steps_before_kill"] = before["ledger"]["steps"] if before else 0
                report["last_round_before_kill"] = before["last_round"] if before else -1
                supernode(kill)  # same node config, same state-dir, a new node id
                killed = True
            if done >= args.rounds:
                break
            time.sleep(0.2)
        report["deployment_s"] = round(time.perf_counter() - t0, 1)
    finally:
        if run_id:
            with open(work / "serverapp.log", "w") as log:
                subprocess.run(
                    [str(BIN / "flwr"), "log", run_id, "loopback", "--show"],
                    env=env,
                    cwd=work,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=60,
                )
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)

    final = torch.load(checkpoint, weights_only=True)
    files = sorted((work / f"node{kill}").glob("ledger-*.pt"))
    after = torch.load(files[0], weights_only=True) if files else None
    report["ledger_steps_after_run"] = after["ledger"]["steps"] if after else 0
    report["server_ledger_steps"] = [l["steps"] for l in final["ledgers"]]
    report["epsilon_per_client"] = [None] * args.clients

    # the same run in process, with the same thread count
    torch.set_num_threads(1)
    from lalora_lite.accounting import PrivacyLedger
    from lalora_lite.checkpoint import Checkpoint
    from lalora_lite.federated import FederatedConfig, run_federated
    from lalora_lite.tasks import digits_swin

    cfg = FederatedConfig.from_dict(final["config"])
    task = digits_swin(**task_kwargs)
    t1 = time.perf_counter()
    reference = work / "in-process.pt"
    run_federated(task.backbone, task.clients, task.test, cfg, checkpoint=reference, progress=False)
    report["in_process_s"] = round(time.perf_counter() - t1, 2)
    ref = Checkpoint.load(reference)
    report["epsilon_per_client"] = [round(PrivacyLedger.from_state_dict(l).epsilon, 4) for l in final["ledgers"]]
    report["tensors_identical"] = set(ref.global_state) == set(final["global_state"]) and all(
        torch.equal(ref.global_state[k], final["global_state"][k]) for k in ref.global_state
    )
    report["ledgers_identical"] = ref.ledgers == final["ledgers"]
    report["accuracy_identical"] = [r["accuracy"] for r in ref.history] == [r["accuracy"] for r in final["history"]]
    report["ledger_not_reset"] = (
        report["ledger_steps_before_kill"] > 0
        and report["ledger_steps_after_run"] >= report["ledger_steps_before_kill"]
        and report["ledger_steps_after_run"] == report["server_ledger_steps"][kill]
    )
    report["passed"] = all(
        report[k] for k in ("tensors_identical", "ledgers_identical", "accuracy_identical", "ledger_not_reset")
    )
    (work / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
