"""target-qualys-sqlite, the loader `target-sqlite` of meltano.yml: the SQLite loader bundled with
tap-qualys, built on singer-sdk's SQL target."""
