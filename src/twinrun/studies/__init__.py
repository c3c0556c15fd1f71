"""Studies: how much of a result is chance.

The analysis layer of `twinrun variance`, `twinrun cv` and `twinrun compare`; it computes
and never prints (the CLI renders), and imports SciPy and statsmodels only when it runs.

- `plan`: the sources of randomness, each run's seeds, the study id (pure Python);
- `settings`: `--set key=value` parsing and validation (pure Python);
- `stats`: a sample's summary and its confidence intervals (Student t, bootstrap);
- `variance`: the per-source breakdown, prediction disagreement, the independent-errors floor;
- `anova`: the crossed design's two-way random-effects ANOVA;
- `cv`: fold validation and the `cross_validate`-shaped summary;
- `compare`: A against B (bootstrap CI, Welch, permutation, P(A beats B), power).
"""
