"""The built-in pipeline operations, one module each; every public module here registers itself."""
