"""``python -m sb3_polygrad.render ...``: draw a saved model's imagination (code: ``video/render_command.py``)."""

from sb3_polygrad.video.render_command import main

if __name__ == "__main__":
    main()
