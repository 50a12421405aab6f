"""
The RL Zoo's trainer with ``polygrad`` registered, taking the zoo's arguments: ``python -m sb3_polygrad.train ...``.

It works without the start-up hook (``SB3_POLYGRAD_NO_ZOO_HOOK=1``, or an install that skipped the ``.pth`` file), e.g.
``python -m sb3_polygrad.train --algo polygrad --env Hopper-v4``.
"""

from rl_zoo3.train import train

from sb3_polygrad.zoo.registration import register


def main() -> None:
    """Register PolyGRAD with the zoo, then run ``rl_zoo3.train.train()`` on ``sys.argv``."""
    register()
    train()


if __name__ == "__main__":
    main()
