"""The data stage: a generated world or imported files, validated, written per region."""
