"""silr refine."""
