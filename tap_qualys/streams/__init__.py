"""Stream classes, one module per Qualys domain."""
