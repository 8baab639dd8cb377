"""silr reward."""
