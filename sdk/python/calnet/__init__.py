"""calnet's Python SDK (standard library only): the REST and WebSocket API of
a running network, and offline verification of soul chains."""

from .client import Calnet, CalnetError
from .verify import ChainError, verify_chain

__all__ = ["Calnet", "CalnetError", "ChainError", "verify_chain"]
