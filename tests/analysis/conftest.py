import sys
from pathlib import Path

# run_factory (realistic run directories) lives beside the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent))
