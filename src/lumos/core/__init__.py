"""Core services every method reuses: model adapter, inputs, targets, hooks, batching, seeding, progress,
the gradient engine and the method registry. Knows no specific method."""
