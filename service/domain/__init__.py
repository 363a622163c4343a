"""The pure domain core: stdlib and pydantic only."""
