"""``python -m sb3_polygrad.train ...``: the RL Zoo's trainer with ``polygrad`` registered (code: ``zoo/train.py``)."""

from sb3_polygrad.zoo.train import main

if __name__ == "__main__":
    main()
