"""TimeChat data."""
