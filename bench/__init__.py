"""AuthPI Server benchmark suite (see bench/README.md; run with scripts/bench)."""
