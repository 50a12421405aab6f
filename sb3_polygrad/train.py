"""``python -m sb3_polygrad.train ...``: the RL Zoo's trainer with ``polygrad`` registered (``zoo/train_command.py``)."""

from sb3_polygrad.zoo.train_command import main

if __name__ == "__main__":
    main()
