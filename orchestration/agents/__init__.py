"""Agent runners: worktrees, process supervision, and the per-CLI command lines and event parsers."""
