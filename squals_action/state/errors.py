"""The failures of the state store, lowest in the package so every module may raise them.

:class:`~squals_action.state.locks.LockedError` lives beside the lock document it names.
"""

from __future__ import annotations

from squals_action.errors import SqualsError


class StateError(SqualsError):
    """Base of every failure of the state store."""


class ContentionError(StateError):
    """Other writers kept moving the branch; the transaction gave up after a bounded number of attempts."""

    def __init__(self, branch: str, attempts: int, waited: float | None = None) -> None:
        self.branch = branch
        self.attempts = attempts
        after = f" and {waited:.0f}s" if waited is not None else ""
        super().__init__(
            f"state branch {branch!r} kept moving under concurrent writers: gave up after {attempts} "
            f"attempts{after}"
        )


class PushRejectedError(StateError):
    """The remote refused the update for another reason than a race (protected branch, hook): not retried."""

    def __init__(self, branch: str, remote: str, message: str) -> None:
        self.branch = branch
        self.remote = remote
        self.remote_message = message
        super().__init__(f"remote {remote!r} refused to update state branch {branch!r}: {message}")


class AccessDeniedError(StateError):
    """The remote refused the credentials (HTTP 401) or their permission (HTTP 403): not retried.

    A 403 on a push is how a read-only token (a fork's pull request, Dependabot) shows itself.
    """

    def __init__(self, branch: str, remote: str, status: int, message: str) -> None:
        self.branch = branch
        self.remote = remote
        self.status = status
        what = "did not accept the credentials" if status == 401 else "denied permission"
        super().__init__(f"remote {remote!r} {what} for state branch {branch!r} (HTTP {status}): {message}")


class CorruptStateError(StateError):
    """A state document does not parse or fails its schema; nothing will overwrite it."""

    def __init__(self, path: str, commit: str | None, reason: str) -> None:
        self.path = path
        self.commit = commit
        self.reason = reason
        at = f" at commit {commit[:12]}" if commit else ""
        super().__init__(
            f"corrupt state document {path}{at}: {reason}; fix it by hand, squals will not overwrite it"
        )


class UnrelatedHistoryError(StateError):
    """The state branch does not descend from what was read before, or is not a squals state branch."""


class GitCommandError(StateError):
    """A git command failed or timed out (network, credentials, a broken repository)."""


class RemoteUnreachableError(GitCommandError):
    """git could not fetch from, look at or push to the remote that holds the state branch (network, a wrong
    URL, a remote that does not exist), as opposed to a refusal of the credentials or of the update."""

    def __init__(self, message: str, remote: str) -> None:
        super().__init__(message)
        self.remote = remote
