"""The local instance (seed: cts/settings/local.py)."""
from .base import *  # noqa: F401,F403
