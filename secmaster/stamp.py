"""Who and when of a security-master write (``last_modified_user``/``_datetime``, the added
user and time of a tracked stream): the current UTC time and the OS user.

Its own module so that the poller and the universe both use it without importing each other.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def os_user() -> str:
    """The OS user name, for ``last_modified_user`` when no ``--user`` is given."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or f"uid{os.getuid()}"
