"""Fisher-Kolmogorov tumor growth: anatomy, forward solver, database, inverse."""
