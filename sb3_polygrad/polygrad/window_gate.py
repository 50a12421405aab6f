"""Whether the replay buffer holds enough real windows for training to run, said once while it does not."""

import warnings

from sb3_polygrad.buffers import PolyGRADReplayBuffer


class WindowGate:
    """
    Training samples ``batch_size`` H-step windows; it may start only once the buffer holds that many distinct valid
    windows. ``learning_starts`` ensures it in a fresh run, but not after ``load`` without the replay buffer, when SB3
    trains as soon as ``num_timesteps`` (restored) exceeds it and the new buffer is empty.

    Counting the windows costs a pass over the buffer, so a positive answer is kept until ``recheck``: the buffer only
    grows, except where the algorithm truncates episodes or replaces the buffer, which happen at the start of ``learn``.
    """

    def __init__(self) -> None:
        self._ready = False
        self._warned = False

    def recheck(self) -> None:
        """Count the windows again at the next ``ready`` (the buffer may have been replaced or truncated)."""
        self._ready = False

    def ready(self, buffer: PolyGRADReplayBuffer, horizon: int, batch_size: int) -> bool:
        """
        :param buffer: the replay buffer that training samples from
        :param horizon: H, length of the windows
        :param batch_size: windows per world-model batch
        :return: whether the buffer holds at least ``batch_size`` valid windows (the first ``False`` of a wait warns)
        """
        if self._ready:
            return True
        n_windows = buffer.n_valid_windows(horizon)
        self._ready = n_windows >= batch_size
        if not self._ready and not self._warned:
            warnings.warn(
                f"The replay buffer holds {n_windows} valid {horizon}-step windows, fewer than batch_size={batch_size} "
                "(as after load() without the replay buffer): world-model and actor-critic updates wait until it holds "
                "enough, while collection goes on"
            )
        self._warned = not self._ready  # a later wait (another buffer) says so again
        return self._ready
