"""The paper's natural-image and sRGB tasks: images on disk, camera noise, their workflows."""
