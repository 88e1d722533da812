"""The runner: pipelines in Codex Orchestrator's format, run as journaled processes."""

from runjournal.lazy import exports

_EXPORTS = {
    "Cancel": "capture",
    "StreamCapture": "capture",
    "run_command": "capture",
    "CONFIG_NAME": "config",
    "Config": "config",
    "ConfigError": "config",
    "Limits": "config",
    "Pipeline": "config",
    "Stage": "config",
    "load": "config",
    "starter_text": "config",
    "StageGroup": "orphans",
    "unfinished_groups": "orphans",
    "EXIT_CODES": "run",
    "ResumeRefused": "run",
    "Runner": "run",
    "RunResult": "run",
    "TokenRefused": "run",
    "default_actor": "run",
    "fingerprint": "run",
    "run_exit_code": "run",
    "runner_alive": "run",
}

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

__getattr__ = exports(__name__, _EXPORTS)
