"""What a stage works with: durable state, the event hub, and this worker's state directory.

Kept apart from the lifecycle so that commands which only read state (`status`, `watch`) do not load the
machinery that runs cycles.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestration.hub import Hub
    from orchestration.state import State


@dataclass
class Services:
    state: State
    hub: Hub
    state_dir: Path
