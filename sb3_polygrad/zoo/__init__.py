"""
RL Zoo integration: ``polygrad`` for ``python -m rl_zoo3.train/enjoy``, ``-optimize`` and the packaged ``polygrad.yml``.

``registration`` registers PolyGRAD with the zoo, ``optimize`` holds the Optuna search space and ``_hook`` the start-up
hook that runs the registration whenever the zoo is imported (see ``setup.py`` for the ``.pth`` file that loads it).
"""
