"""`orchestrate serve`: the web monitor."""
