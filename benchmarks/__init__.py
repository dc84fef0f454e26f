"""asv's benchmark package (asv requires one); the benchmarks are generated in asv_suites.py."""
