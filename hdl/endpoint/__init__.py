"""The caching endpoint: AXI4 subordinate, MESI cache with MSHRs, fabric port."""

from .endpoint import Endpoint, state_change_layout

__all__ = ["Endpoint", "state_change_layout"]
