"""The session analyzer (the analyze stage): Claude Code transcripts and Codex rollouts → Insights."""

from orchestration.sessions.analyzer import analyze_sessions

__all__ = ["analyze_sessions"]
