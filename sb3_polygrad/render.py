"""``python -m sb3_polygrad.render ...``: draw a saved model's imagination (code: ``video/render.py``)."""

from sb3_polygrad.video.render import main

if __name__ == "__main__":
    main()
