"""The zoo: eight deep generative-model papers as pure-function Flax modules.

zoo.list_models()            sorted registry names
zoo.get(name)                the ModelSpec: name, paper, family, build, default_config
zoo.build(name, **hp)        the Flax module with the paper's defaults
zoo.load(workdir)            (model, variables, config) of a trained run
zoo.fit(model, dataset)      a model trained in one call, as the runner trains it (`Fitted`)
"""

from zoo import checkpoints
from zoo import configs
from zoo import data
from zoo import errors
from zoo import metrics
from zoo.fitting import fit
from zoo.registry import ModelSpec
from zoo.registry import build
from zoo.registry import get
from zoo.registry import list_models


def load(workdir: str, replica: int = 0):
  """A run the runner wrote, to use in a notebook.

  Args:
    workdir: the run's directory (`python -m experiments.run --workdir=...`).
    replica: of a run of several replicas, which: seed `config.seed + replica % num_seeds` of
      the setting `replica // num_seeds` of `zoo.configs.settings(config)`.

  Returns:
    (model, variables, config): the Flax module, the replica's variables (its best
    evaluation's, else its latest checkpoint's; a sweep's hold the replica's swept fields,
    which `model.apply` uses) and the config the run trained with.

  Raises:
    ValueError: a replica the run does not have, or a workdir from before replicas.
  """
  config = checkpoints.read_config(workdir)
  if "num_seeds" not in config:
    raise ValueError(
        f"{workdir} was written before runs had a replica axis (its config.json has no "
        "num_seeds); load it with a zoo of that time, or train it again"
    )
  replicas = configs.num_replicas(config)
  if not 0 <= replica < replicas:
    raise ValueError(f"replica {replica} of a run of {replicas} replicas")
  model = build(config.model_name, **config.model)
  return model, checkpoints.restore_variables(workdir, replica), config


__all__ = [
    "ModelSpec",
    "build",
    "data",
    "errors",
    "fit",
    "get",
    "list_models",
    "load",
    "metrics",
]
