"""One module per paper; each registers itself with `zoo.registry.register`."""
