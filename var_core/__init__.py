"""VAR core: visual-sink detection, image-centric head selection and attention redistribution (ICLR 2025)."""

__version__ = "0.3.0"  # the one place: pyproject.toml reads it, the app shows it
