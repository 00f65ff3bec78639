"""Built-in losses (plugins), each written once against the array namespace."""
