"""The runner: pipelines in Codex Orchestrator's format, run as journaled processes."""

from .capture import Cancel, StreamCapture, run_command
from .config import CONFIG_NAME, Config, ConfigError, Limits, Pipeline, Stage, load, starter_text
from .orphans import StageGroup, unfinished_groups
from .run import EXIT_CODES, ResumeRefused, Runner, RunResult, TokenRefused, default_actor, fingerprint, run_exit_code, runner_alive

__all__ = [
    "CONFIG_NAME",
    "Cancel",
    "Config",
    "ConfigError",
    "Limits",
    "Pipeline",
    "EXIT_CODES",
    "ResumeRefused",
    "RunResult",
    "Runner",
    "Stage",
    "StageGroup",
    "StreamCapture",
    "default_actor",
    "fingerprint",
    "load",
    "run_command",
    "runner_alive",
    "run_exit_code",
    "starter_text",
    "TokenRefused",
    "unfinished_groups",
]
