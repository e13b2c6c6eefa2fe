"""Decision orchestrator: candidates, dedupe against task history, and the chosen brief."""

from orchestration.decide.heuristic import Candidate, candidates, choose, op_hash

__all__ = ["Candidate", "candidates", "choose", "op_hash"]
