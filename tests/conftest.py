import san_mm  # noqa: F401  (registers modules, applies the checkpoint policy)
