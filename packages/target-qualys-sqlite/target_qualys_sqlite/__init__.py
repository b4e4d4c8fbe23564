"""target-sqlite: the SQLite loader bundled with tap-qualys, built on singer-sdk's SQL target."""
