"""Mark the fake az as logged in with client id argv[1]."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fakes"))
from recording import load_state, save_state

save_state("azure.json", {**load_state("azure.json", {}), "logged_in": sys.argv[1]})
