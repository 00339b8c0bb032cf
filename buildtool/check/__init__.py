"""The check that runs inside a step image (its imports, pip check) and the local record of what passed."""
