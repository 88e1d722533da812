"""The runner: pipelines in Codex Orchestrator's format, run as journaled processes."""

from .capture import Cancel, StreamCapture, run_command
from .config import CONFIG_NAME, Config, ConfigError, Limits, Pipeline, Stage, load, starter_text
from .run import Runner, RunResult, ResumeRefused, default_actor, fingerprint, runner_alive

__all__ = [
    "CONFIG_NAME",
    "Cancel",
    "Config",
    "ConfigError",
    "Limits",
    "Pipeline",
    "ResumeRefused",
    "RunResult",
    "Runner",
    "Stage",
    "StreamCapture",
    "default_actor",
    "fingerprint",
    "load",
    "run_command",
    "runner_alive",
    "starter_text",
]
