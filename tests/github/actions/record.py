"""Record a stand-in action's call: python3 record.py ACTION [key=value ...]."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
from recording import record

record(sys.argv[1], sys.argv[2:])
