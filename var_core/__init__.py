"""VAR core: visual-sink detection, image-centric head selection and attention redistribution (ICLR 2025)."""
