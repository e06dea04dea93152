"""``python -m benchmarks.probe PEER SIZE DTYPE STATE_FILE STEPS``: one fresh-process measurement, as JSON."""

from __future__ import annotations

import json
import sys

from benchmarks.measure import probe

if __name__ == "__main__":
    peer, size, dtype, state_file, steps = sys.argv[1:6]
    print(json.dumps(probe(peer, size, dtype, state_file, int(steps))))
