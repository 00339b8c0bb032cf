"""The inputs of an image, independent of where it goes: its build context, its Dockerfile (rendered from a
template), the step imports it must hold, and the content tag hashed from them (the plan: build or reuse)."""
