"""paramiko has no streamlocal helper, so transport/ssh.py uses Transport internals.

This guards the exact internals it relies on, so a paramiko upgrade that
moves them fails here, not in a user's DAG. The channel itself is exercised
against a real sshd in tests/integration.
"""

import paramiko
from paramiko.common import cMSG_CHANNEL_OPEN  # noqa: F401 - must exist


def test_transport_internals_used_by_open_streamlocal_exist():
    for name in ("_sanitize_window_size", "_sanitize_packet_size", "_next_channel", "_send_user_message"):
        assert callable(getattr(paramiko.Transport, name)), name
    for name in ("_set_transport", "_set_window"):
        assert callable(getattr(paramiko.Channel, name)), name


def test_open_channel_still_uses_the_bookkeeping_we_mirror():
    import inspect

    source = inspect.getsource(paramiko.Transport.open_channel)
    for needle in ("self._channels.put", "self.channel_events[chanid]", "self.channels_seen[chanid]", "chan._set_window"):
        assert needle in source, needle
