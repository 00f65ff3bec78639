"""Built-in model types (plugins) and the backbones they are built from."""
