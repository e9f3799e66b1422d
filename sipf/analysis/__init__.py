"""Reading finished runs: DuckDB over the rollouts (query), the paper's tables (report) and
figures (figures)."""
