"""User-space network impairment (the kernel's netem is not available): a pure model of delay,
jitter, loss and reordering, and a thin TCP/UDP forwarding proxy that applies it."""

from .model import Impairment, ImpairmentModel
from .proxy import ImpairProxy

__all__ = ["ImpairProxy", "Impairment", "ImpairmentModel"]
