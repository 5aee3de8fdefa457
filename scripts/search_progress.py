"""Where a comparison's search stands, read from its finished runs (no training).

``lalora compare`` writes ``search.csv`` and ``chosen.csv`` only when the whole comparison ends; a
search that takes several sessions can be read earlier from the run files themselves. For every
method and budget this prints the grid of scores so far (validation accuracy %, the mean of the last
``search.SCORE_LAST`` evaluations, learning rates as rows and clip norms as columns) and what the
search's rule (``search.GridSearch.best``: ties within one binomial standard error, then the most
interior point) chooses on the points scored so far, with the edges that choice still lies on; a grid
whose points are not all scored yet (the profile's starting grid included) shows how many are running. The
rule's tie tolerance uses the validation size of the task and profile named in the run files. A folder
that holds runs made at other profile settings (another run digest, the file name's last part) shows
each digest's grids apart, and names the digest that the current profile computes; runs on other
seeds' splits (``benchmarks/search_splits.py``) get grids of their own.

Usage:
  python scripts/search_progress.py runs/wordnet-minilm/cpu
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lalora_lite.study.comparison import search_clips  # noqa: E402
from lalora_lite.study.runs import run_digest  # noqa: E402
from lalora_lite.study.search import GridSearch, score  # noqa: E402
from lalora_lite.tasks import get_profile  # noqa: E402


def search_runs(folder: Path) -> pd.DataFrame:
    """One row per finished search run (``val_*.csv``): digest, task, profile, method, epsilon (inf: no DP),
    seed, lr, clip, score, run_wall_s."""
    rows = []
    for path in sorted(folder.glob("val_*.csv")):
        history = pd.read_csv(path)
        first = history.iloc[0]
        eps = first["epsilon_target"]
        rows.append(
            {
                "digest": path.stem.rsplit("_", 1)[-1],
                "task": first["task"],
                "profile": first["profile"],
                "method": first["method"],
                "epsilon": math.inf if pd.isna(eps) else float(eps),
                "seed": int(first["seed"]),
                "lr": float(first["lr"]),
                "clip": float(first["clip_norm"]),
                "score": score(history),
                "run_wall_s": float(first["run_wall_s"]),
            }
        )
    if not rows:
        raise SystemExit(f"no finished search runs (val_*.csv) in {folder}")
    return pd.DataFrame(rows)


def progress(runs: pd.DataFrame) -> str:
    """The grid so far and the current choice, per method and budget."""
    blocks = [f"{len(runs)} finished search runs, median run_wall_s {runs['run_wall_s'].median():.0f}"]
    for digest, made_alike in runs.groupby("digest", sort=False):  # one profile digest's runs together
        first = made_alike.iloc[0]
        current = run_digest(get_profile(first["task"], first["profile"]))
        blocks.append(
            f"== run digest {digest} ({len(made_alike)} runs): "
            + ("the current profile's" if digest == current else f"other settings (now {current})")
        )
        for (task, profile_name, method, eps, seed), group in made_alike.groupby(
            ["task", "profile", "method", "epsilon", "seed"], sort=False
        ):
            profile = get_profile(task, profile_name)
            lrs, clips = set(group["lr"]), set(group["clip"])
            if digest == current and seed == profile.seeds[0]:  # the search's own: it starts from the profile's grid
                lrs, clips = lrs | set(profile.lr_grid), clips | set(search_clips(profile, method))
            grid = GridSearch(
                method,
                None if math.isinf(eps) else eps,
                tuple(sorted(lrs)),
                tuple(sorted(clips)),
                val_size=profile.val_size,
            )
            grid.scores = {(r.lr, r.clip): r.score for r in group.itertuples()}
            missing = grid.pending()  # points of the spanned grid not scored yet (a step still running)
            lr, clip = grid.best() if not missing else (math.nan, math.nan)
            state = (
                f"{len(missing)} of {len(grid.points())} points still running"
                if missing
                else f"choice lr {lr:g} / clip {clip:g} (score {100 * grid.scores[(lr, clip)]:.1f}), "
                f"edges: {' '.join(grid.edges()) or 'none'}"
            )
            table = group.pivot(index="lr", columns="clip", values="score").map(lambda v: f"{100 * v:.1f}")
            blocks.append(f"{method} eps={eps:g} seed {seed} ({len(group)} runs): {state}\n{table.to_string()}")
    return "\n\n".join(blocks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="a run folder, e.g. runs/wordnet-minilm/cpu")
    args = parser.parse_args()
    if not args.folder.is_dir():
        raise SystemExit(f"{args.folder} is not a folder")
    print(progress(search_runs(args.folder)))


if __name__ == "__main__":
    main()
