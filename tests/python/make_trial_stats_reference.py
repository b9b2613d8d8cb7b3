"""Reference values for src/trial/stats.rs, computed by SciPy and statsmodels
(not by the code under test). Writes tests/fixtures/trial/stats_reference.json.

Development tool, not run by CI (SciPy and statsmodels are not CI
dependencies):

    python3 -m venv /tmp/statsvenv && /tmp/statsvenv/bin/pip install scipy statsmodels
    /tmp/statsvenv/bin/python tests/python/make_trial_stats_reference.py
"""
import json
import pathlib

import scipy
import statsmodels
from scipy.stats import fisher_exact
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

# (successes, trials) pairs: the team's 18/20 and 9/10 cases, small and
# extreme counts, and sizes of a sim batch.
rates = [(0, 1), (1, 1), (1, 2), (0, 10), (10, 10), (9, 10), (18, 20), (5, 20),
         (45, 50), (0, 100), (93, 100), (100, 100), (412, 500), (1, 3), (7, 13)]
pairs = [((18, 20), (12, 20)), ((9, 10), (9, 10)), ((10, 10), (0, 10)),
         ((1, 2), (0, 2)), ((93, 100), (80, 100)), ((45, 50), (47, 50)),
         ((3, 7), (11, 13)), ((0, 5), (0, 5)), ((20, 20), (17, 20)),
         ((412, 500), (380, 500))]

out = {
    "generator": f"scipy {scipy.__version__}, statsmodels {statsmodels.__version__}",
    "wilson_95": [],
    "comparisons": [],
}
for k, n in rates:
    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    out["wilson_95"].append({"k": k, "n": n, "lo": float(lo), "hi": float(hi)})
for (k1, n1), (k2, n2) in pairs:
    _, p = fisher_exact([[k1, n1 - k1], [k2, n2 - k2]], alternative="two-sided")
    lo, hi = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff")
    out["comparisons"].append({"k1": k1, "n1": n1, "k2": k2, "n2": n2,
                               "fisher_p": float(p), "diff_lo": float(lo), "diff_hi": float(hi)})

path = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "trial" / "stats_reference.json"
path.write_text(json.dumps(out, indent=1) + "\n")
print(f"wrote {path}")
