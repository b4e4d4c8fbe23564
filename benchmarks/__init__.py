"""How close tap-qualys is to its limits: ``python -m benchmarks [--size smoke|full]``.

One command starts the simulator(s) itself, runs every measurement ``--repeat`` times (3 for
``full``, 1 for ``smoke``) and prints one markdown table of medians (with min and max) of ratios
against floors measured in the same run; it also writes the table to
``benchmarks/results/latest.md``. ``--only NAME`` (repeatable) runs one measurement: ``tap``,
``target``, ``e2e``, ``concurrency``, ``memory``, ``scaleout``.

Modules: ``harness`` (sizes, repetitions, the table), ``measurements`` (the six rows),
``processes`` (timed subprocesses with their peak RSS, pipes, Meltano), ``replay`` (a caching
proxy so the simulator's rendering is never timed), and the standalone micro-benchmarks
``parsers`` and ``target_sqlite``, whose floors the table reuses, ``emission`` (what the
SDK privates of ``tap_qualys/emit.py`` buy, per record) and ``target_paths`` (the same for
``target_qualys_sqlite/sdk.py``).
"""
