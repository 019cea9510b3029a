"""Per-action drill variants and their cleaners; every module here is loaded by discovery."""
