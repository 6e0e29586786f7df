"""What the benchmark measures, one module each; run through bench/<name>.py."""
