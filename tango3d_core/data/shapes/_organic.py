"""Shape families (filled in by its owner)."""
