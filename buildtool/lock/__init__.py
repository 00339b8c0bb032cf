"""The locked map: image_map.yaml (step -> pinned image, and what each image was built from), its lock, and
whether it and the compiled workflow are fresh against the tree."""
