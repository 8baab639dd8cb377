"""silr align."""
