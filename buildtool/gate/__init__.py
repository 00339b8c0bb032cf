"""The gate: the pipeline compiled from the locked map alone, and the compiled workflow verified against it."""
