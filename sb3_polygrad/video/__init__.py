"""Videos of the world model: imagined trajectories drawn in MuJoCo beside the real ones, rendered headless."""

from sb3_polygrad.video.backend import RenderingBackendError, select_gl_backend
from sb3_polygrad.video.frames import compose_panels, encode_gif, make_render_env, render_states, write_video
from sb3_polygrad.video.imagination import buffer_start_states, imagination_video, imagine_chained, policy_start_states
from sb3_polygrad.video.states import ObservationLayout, StateRollout, replay_states

__all__ = [
    "ObservationLayout",
    "RenderingBackendError",
    "StateRollout",
    "buffer_start_states",
    "compose_panels",
    "encode_gif",
    "imagination_video",
    "imagine_chained",
    "make_render_env",
    "policy_start_states",
    "render_states",
    "replay_states",
    "select_gl_backend",
    "write_video",
]
