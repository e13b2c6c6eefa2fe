"""The session analyzer (SPEC §5 "analyze"): Claude Code transcripts and Codex rollouts → Insights."""

from orchestration.sessions.analyzer import analyze_sessions

__all__ = ["analyze_sessions"]
