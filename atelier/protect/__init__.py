"""Data protection: keys the group holds, encrypted Parquet, Feast permissions, residency audit."""
