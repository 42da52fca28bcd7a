"""TimeChat metrics."""
