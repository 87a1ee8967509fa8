"""Classical solvers used as references and equal-memory baselines (numpy/scipy only)."""
