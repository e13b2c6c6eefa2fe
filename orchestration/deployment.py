"""What a valid config needs of this deployment: the broker's timeouts against its budget, and its pipeline's
checks. Kept apart from `cycle` (git, worktrees, state, the pipeline runtime) so that the commands that
only load a config (`analyze`, `validate`, …) do not import the cycle machinery."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestration.config import WorkspaceConfig
    from orchestration.settings import Settings

# How long past its budget a cycle may run: the agent's kill grace plus the wrap-up stages.
GRACE_S = 30
# What the broker's visibility timeout must leave beyond a cycle's budget and grace: the steps around
# execute (start, analyze, decide, publish, finish) run within it too.
VISIBILITY_MARGIN_S = 300


def config_problems(cfg: WorkspaceConfig, settings: Settings) -> list[str]:
    """What makes a valid file unusable on this deployment; each line starts with its JSON path."""
    problems = []
    need = cfg.budget.cycle_s + GRACE_S + VISIBILITY_MARGIN_S
    if not settings.broker_is_amqp and settings.visibility_timeout_s < need:
        # With acks_late, a stage running past the visibility timeout is redelivered to a second worker
        # while the first still runs.
        problems.append(
            f"budget.cycle_s: {cfg.budget.cycle_s} s does not fit the broker's visibility_timeout of "
            f"{settings.visibility_timeout_s} s (a running stage would be redelivered to a second worker); "
            f"set ORCH_VISIBILITY_TIMEOUT_S to at least {need}"
        )
    if cfg.pipeline is not None:
        from orchestration.pipeline.check import check_steps
        from orchestration.pipeline.manifest import steps_of

        problems += check_steps(steps_of(cfg), cfg)
    return problems


def config_warnings(cfg: WorkspaceConfig, settings: Settings) -> list[str]:
    """What may go wrong with a valid file on this deployment, without making it unusable."""
    warnings = []
    need = cfg.budget.cycle_s + GRACE_S + VISIBILITY_MARGIN_S
    if settings.broker_is_amqp and settings.consumer_timeout_s < need:
        # RabbitMQ closes the channel of an unacknowledged (late-ack) delivery held past consumer_timeout:
        # the agent's step would be delivered again while the first still runs.
        warnings.append(
            f"budget.cycle_s: {cfg.budget.cycle_s} s does not fit RabbitMQ's consumer_timeout of "
            f"{settings.consumer_timeout_s} s (the agent's step would be delivered again while it runs); raise "
            f"consumer_timeout on the server to at least {need * 1000} ms and set ORCH_CONSUMER_TIMEOUT_S={need}"
        )
    return warnings
