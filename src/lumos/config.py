"""Settings: ``lumos.config.set_memory_budget("4GB")``; env vars ``LUMOS_MEMORY_BUDGET``, ``LUMOS_PROGRESS``."""

from .core.config import DEFAULT_MEMORY_BUDGET, memory_budget, set_memory_budget

__all__ = ["DEFAULT_MEMORY_BUDGET", "memory_budget", "set_memory_budget"]
