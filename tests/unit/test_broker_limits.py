"""The broker's redelivery limits against a config's budget: Redis's visibility_timeout is a hard limit
(refused), RabbitMQ's consumer_timeout a server setting (warned, with what to set)."""

from __future__ import annotations

from orchestration.config import parse_config
from orchestration.deployment import config_problems, config_warnings
from orchestration.settings import Settings

CFG = parse_config({"workspace": {"repo": "/srv/repos/x"}, "budget": {"cycle_s": 3600}})
AMQP = "amqp://guest:guest@127.0.0.1:5672//"


def test_a_redis_broker_refuses_a_budget_past_its_visibility_timeout() -> None:
    settings = Settings(redis_url="redis://127.0.0.1:6379/0", visibility_timeout_s=3000)
    [problem] = config_problems(CFG, settings)
    assert problem.startswith("budget.cycle_s: 3600 s") and "ORCH_VISIBILITY_TIMEOUT_S to at least 3930" in problem
    assert config_warnings(CFG, settings) == []


def test_rabbitmq_warns_when_the_budget_does_not_fit_its_consumer_timeout() -> None:
    settings = Settings(broker_url=AMQP, visibility_timeout_s=3000)  # Redis's limit does not apply to RabbitMQ
    assert config_problems(CFG, settings) == []
    [warning] = config_warnings(CFG, settings)
    assert "consumer_timeout of 1800 s" in warning and "at least 3930000 ms" in warning
    assert config_warnings(CFG, Settings(broker_url=AMQP, consumer_timeout_s=3930)) == []
