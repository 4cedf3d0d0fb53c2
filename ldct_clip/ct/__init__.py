"""CT: reading cases as MONAI data, their datasets, and where their outputs go."""
