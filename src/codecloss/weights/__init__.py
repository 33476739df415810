"""Weight registry and verified downloads (work in progress: see issue #3)."""

from __future__ import annotations

from torch import Tensor


def registered_state_dict(name: str, backbone_id: str) -> dict[str, Tensor]:
    """Resolve a registry name (or ``"default"``) for a backbone to a verified state_dict."""
    raise ValueError(
        f"weights: {name!r} for backbone {backbone_id!r} is not available yet; "
        "pass a checkpoint file path or weights=None"
    )
