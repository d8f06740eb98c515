"""Where the project's own files live (conf/ sits beside the package; install with `pip install -e .`)."""

import os
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"


def cache_dir() -> Path:
    """Cache for generated artefacts (tiny models, samples): $DOCVLM_CACHE or ~/.cache/docvlm."""
    return Path(os.environ.get("DOCVLM_CACHE") or Path.home() / ".cache" / "docvlm")


def yaml_mapping(source: Any, default: Path, what: str) -> tuple[dict[str, Any], str]:
    """A YAML config section as a plain dict, and where it came from (for error messages).

    `source`: None (the `default` file), a path, a Hydra/OmegaConf node or a mapping. Raises
    ValueError naming `what` when the file is missing.
    """
    from omegaconf import DictConfig, OmegaConf  # keep `import docvlm.paths` light

    if source is None:
        source = default
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"{what} file not found: {path}")
        return OmegaConf.to_container(OmegaConf.load(path), resolve=True), str(path)  # type: ignore[return-value]
    if isinstance(source, DictConfig):
        return OmegaConf.to_container(source, resolve=True), what  # type: ignore[return-value]
    return dict(source), what
