"""Where the project's own files live (conf/ sits beside the package; install with `pip install -e .`)."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"


def cache_dir() -> Path:
    """Cache for generated artefacts (tiny models, samples): $DOCVLM_CACHE or ~/.cache/docvlm."""
    return Path(os.environ.get("DOCVLM_CACHE") or Path.home() / ".cache" / "docvlm")
