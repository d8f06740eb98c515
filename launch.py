"""docvlm entry point: `torchrun --nproc_per_node=N launch.py [overrides]` or `python launch.py [overrides]`.

Hydra composes conf/ (+ overrides) into a config; docvlm.run does the work on every rank.
"""

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

import docvlm.config  # noqa: F401  registers the config schema and resolvers before Hydra composes
from docvlm.run import run


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    # Under a multirun sweep each job writes into its own folder (hydra.sweep.dir/job-N).
    with open_dict(cfg):
        cfg.output.dir = HydraConfig.get().runtime.output_dir
    run(cfg)


if __name__ == "__main__":
    main()
