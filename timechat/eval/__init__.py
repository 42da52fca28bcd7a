"""TimeChat eval."""
