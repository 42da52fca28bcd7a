"""TimeChat train."""
