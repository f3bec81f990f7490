"""Backends execute a `BatchPlan`: `numpy` (Pillow + table gather, always available) and `triton` (the fused
kernel; imported only when asked for, since it needs torch and triton)."""


class BackendUnavailableError(ValueError):
    """A backend or device was asked for that cannot run here (never a silent fallback)."""
