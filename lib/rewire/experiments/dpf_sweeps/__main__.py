"""``python -m rewire.experiments.dpf_sweeps --grid --out results/dpf_runs``: the DVC stage ``dpf_runs``."""

import sys

from rewire.experiments.dpf_sweeps.cli import main

if __name__ == "__main__":
    sys.exit(main())
