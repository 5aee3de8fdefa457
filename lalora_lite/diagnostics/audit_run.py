"""``lalora audit``: the privacy audit of our DP step, of a whole local update, and of the authors'
mechanism, at several claimed budgets; tables under ``results/audit/<profile>/``, one figure.

Every claim is audited at full batch (q = 1), where the accountant's claim is a mu-GDP claim:
sigma is calibrated by the project's RDP accountant for the claimed epsilon over the audited steps,
and the same sigma is given to the authors' mechanism (they claim the same epsilon for it).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..accounting import calibrate_noise_multiplier
from .audit import (
    DiracCanary,
    Mechanism,
    audit_local_update,
    audit_mechanism,
    background_gradients,
    claim,
    dp_sgd_mechanism,
    one_run_epsilon_lower_bound,
    summarise,
)
from .authors_mechanism import authors_noisy_gradient, epsilon_actually_bought

DELTA = 1e-5
CLIP = 1.0
BATCH, TENSORS, SIZE = 16, 4, 16  # the step audit's background: 16 examples over 4 tensors of 16 numbers


@dataclass(frozen=True)
class AuditProfile:
    epsilons: tuple[float, ...]
    step_trials: int
    update_epsilons: tuple[float, ...]
    update_methods: tuple[str, ...]
    update_steps: int
    update_trials: int
    one_run_canaries: int
    one_run_guesses: int


AUDIT_PROFILES = {
    "smoke": AuditProfile((1.0, 2.0, 4.0, 8.0), 4000, (4.0,), ("lalora",), 2, 100, 200, 40),
    "cpu": AuditProfile((1.0, 2.0, 4.0, 8.0), 20_000, (2.0, 8.0), ("lalora", "dp-lora"), 4, 1000, 2000, 200),
}


LABELS = {"ours": "ours (per-example clipping)", "authors": "authors (batch-mean clipping)"}


def mechanisms(sigma: float) -> dict[str, Mechanism]:
    """The two audited mechanisms at the same noise multiplier: ours and the authors' (NOT private)."""
    return {
        "ours": dp_sgd_mechanism(CLIP, sigma, BATCH),
        "authors": lambda per_example, generator: authors_noisy_gradient(per_example, sigma, generator),
    }


def step_audits(profile: AuditProfile, seed: int = 0) -> pd.DataFrame:
    """One DP step: ours (``privacy.noisy_gradient``) and the authors' mechanism, per claimed epsilon."""
    canary = DiracCanary({"t0": 3}, magnitude=100 * CLIP)
    background = background_gradients(TENSORS, SIZE, BATCH, 2 * CLIP, canary, seed)
    rows = []
    for eps in profile.epsilons:
        sigma = calibrate_noise_multiplier(eps, DELTA, 1.0, 1)
        claimed, mu = claim(sigma, 1, DELTA)
        for name, mechanism in mechanisms(sigma).items():
            scores_in, scores_out = audit_mechanism(mechanism, background, canary, profile.step_trials, seed)
            row = summarise(LABELS[name], scores_in, scores_out, claimed, mu, DELTA).to_dict()
            row["sigma"] = sigma
            if name == "authors":
                row["epsilon_its_sigma_buys"] = epsilon_actually_bought(sigma, BATCH, TENSORS, 1.0, 1, DELTA)
            rows.append(row)
    return pd.DataFrame(rows)


def update_audits(profile: AuditProfile, seed: int = 0) -> pd.DataFrame:
    """A whole ``training.local_update`` (tiny LoRA model, full batch, the canary in both factors)."""
    rows = []
    for eps in profile.update_epsilons:
        sigma = calibrate_noise_multiplier(eps, DELTA, 1.0, profile.update_steps)
        claimed, mu = claim(sigma, profile.update_steps, DELTA)
        for method in profile.update_methods:
            scores_in, scores_out = audit_local_update(
                method, sigma, profile.update_steps, profile.update_trials, clip_norm=CLIP, seed=seed
            )
            row = summarise(f"local_update ({method})", scores_in, scores_out, claimed, mu, DELTA).to_dict()
            rows.append({**row, "sigma": sigma, "steps": profile.update_steps})
    return pd.DataFrame(rows)


def one_run_audit(canaries: int, guesses: int, mechanism: Mechanism, seed: int = 0) -> dict:
    """Steinke et al.'s audit in ONE step: ``canaries`` Dirac canaries on distinct coordinates, each
    included with probability 1/2; guess "in" for the top ``guesses/2`` scores and "out" for the bottom."""
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    included = rng.random(canaries) < 0.5
    size = 2 * canaries
    examples = [torch.zeros(size) for _ in range(BATCH)]
    for e in examples:  # background examples touch only the coordinates no canary uses
        e[canaries:] = torch.randn(canaries, generator=generator)
        e.mul_(2 * CLIP / e.norm())
    for j in np.flatnonzero(included):
        canary = torch.zeros(size)
        canary[j] = 100 * CLIP
        examples.append(canary)
    update = mechanism({"w": torch.stack(examples)}, generator)["w"]
    order = np.argsort(update[:canaries].numpy())
    half = guesses // 2
    correct = int(included[order[-half:]].sum() + (~included[order[:half]]).sum())
    return {
        "canaries": canaries,
        "guesses": 2 * half,
        "correct": correct,
        "epsilon_lb": one_run_epsilon_lower_bound(canaries, 2 * half, correct, DELTA, 0.05),
    }


def one_run_audits(profile: AuditProfile, seed: int = 0) -> pd.DataFrame:
    rows = []
    for eps in profile.epsilons:
        sigma = calibrate_noise_multiplier(eps, DELTA, 1.0, 1)
        claimed, _ = claim(sigma, 1, DELTA)
        for name, mechanism in mechanisms(sigma).items():
            row = one_run_audit(profile.one_run_canaries, profile.one_run_guesses, mechanism, seed)
            rows.append({"mechanism": name, **row, "claimed_epsilon": claimed, "sigma": sigma})
    return pd.DataFrame(rows)


def run_audit(profile_name: str, results: Path, figures: Path, seed: int = 0) -> dict[str, pd.DataFrame]:
    """All three audits; writes ``results/audit/<profile>/*.csv``, ``meta.json`` and the figure."""
    if profile_name not in AUDIT_PROFILES:
        raise ValueError(f"unknown audit profile {profile_name!r}; allowed: {', '.join(AUDIT_PROFILES)}")
    profile = AUDIT_PROFILES[profile_name]
    out = results / "audit" / profile_name
    out.mkdir(parents=True, exist_ok=True)
    started, tables, timings = time.perf_counter(), {}, {}
    for name, fn in (
        ("step_audit", step_audits),
        ("local_update_audit", update_audits),
        ("one_run_audit", one_run_audits),
    ):
        t0 = time.perf_counter()
        tables[name] = fn(profile, seed)
        timings[name] = round(time.perf_counter() - t0, 1)
        tables[name].to_csv(out / f"{name}.csv", index=False)
    meta = {
        "profile": profile_name,
        "settings": profile.__dict__,
        "delta": DELTA,
        "clip_norm": CLIP,
        "seed": seed,
        "wall_s": timings | {"total": round(time.perf_counter() - started, 1)},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    figures.mkdir(parents=True, exist_ok=True)
    import matplotlib.pyplot as plt

    plt.close(plot_audit(tables["step_audit"], figures / f"audit-{profile_name}.png"))
    return tables


def plot_audit(step: pd.DataFrame, path: Path | None = None):
    """Empirical lower bounds against the claimed epsilon, per mechanism (log scale)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = {"ours": ("tab:blue", "o"), "authors": ("tab:red", "s")}
    for name, group in step.groupby("mechanism", sort=False):
        colour, marker = styles[name.split()[0]]
        ax.plot(
            group["claimed_epsilon"], group["epsilon_lb_gdp"], marker=marker, color=colour, label=f"{name}: GDP bound"
        )
        ax.plot(
            group["claimed_epsilon"],
            group["epsilon_lb_cp"],
            marker=marker,
            color=colour,
            ls="--",
            mfc="none",
            label=f"{name}: Clopper-Pearson bound",
        )
    claimed = [0.8 * step["claimed_epsilon"].min(), 1.25 * step["claimed_epsilon"].max()]
    ax.plot(claimed, claimed, color="black", lw=1, label="lower bound = claimed epsilon")
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1.0)  # linear below 1 (bounds of 0 stay visible), log above
    ax.set(
        xlim=claimed,
        ylim=(0, 2 * step["epsilon_lb_gdp"].max()),
        xlabel="claimed epsilon (RDP accountant, delta=1e-5)",
        ylabel="empirical epsilon lower bound (95%)",
        title=f"Privacy audit of one DP step ({int(step['trials'].iloc[0])} trials per point)",
    )
    ticks = sorted(step["claimed_epsilon"].unique())
    ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks])
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig
