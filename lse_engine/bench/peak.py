"""A process's peak resident memory over one stretch of work (Linux: `VmHWM`, reset through `clear_refs`), so each
bench run reports its own peak although every run shares one process."""

from __future__ import annotations

from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR = Path("/proc/self/clear_refs")


def reset() -> bool:
    """Start a new peak at the present resident size; False where the system cannot (then `peak_mb` is the
    process's peak so far)."""
    try:
        _CLEAR.write_text("5")
        return True
    except OSError:
        return False


def peak_mb() -> float | None:
    """The peak resident size since the last `reset` (or since the process began), in MB; None when unknown."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
