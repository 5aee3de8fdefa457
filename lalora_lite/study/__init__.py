"""The comparison and everything drawn from it: ``lalora compare``, ``lalora figures``, ``lalora estimate``.

* :mod:`.comparison`: the main job: per-budget searches, then final runs over seeds;
* :mod:`.runs`: one run, stored under ``runs/`` and resumable, and the pool of worker processes;
* :mod:`.search`: the lr x C grid search, widened off its edges;
* :mod:`.stats`: seed-paired differences and t-intervals;
* :mod:`.stored`: reading a stored comparison back (and its chosen settings);
* :mod:`.estimate`: time and memory of a profile before it runs;
* :mod:`.transfer`: the centralised, non-private references;
* :mod:`.plotting`, :mod:`.tables`: the figures and tables of ``lalora figures``;
* :mod:`.paper`, :mod:`.style`, :mod:`.paths`: the paper's reported numbers, one colour per method,
  and where files go.
"""
