"""Built-in compute backends; each is a plugin registered through dlbatch's hooks."""
