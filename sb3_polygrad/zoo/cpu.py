"""
PolyGRAD's CPU-sized zoo entries as a ``-conf`` module: ``python -m rl_zoo3.train --algo polygrad --env Hopper-v4
-conf sb3_polygrad.zoo.cpu``. The zoo imports a ``-conf`` value that is not a file path and reads its ``hyperparams``,
so the command works from any install, without the path of the packaged YAML file.
"""

from typing import Any

import yaml

from sb3_polygrad.zoo.registration import hyperparams_path

hyperparams: dict[str, dict[str, Any]] = yaml.safe_load(hyperparams_path("cpu").read_text())
