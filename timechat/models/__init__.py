"""TimeChat models."""
