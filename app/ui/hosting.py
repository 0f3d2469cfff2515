"""How a server shares itself: one projects folder, a private workspace per visitor, or one shared project.

`Hosting` is what the command line (or a Space's variables) decided; `build_demo` and the handlers read it. The
host (who may export and change settings of a shared project) is whoever signs in under a host name, or types the
host password on the page.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.engine.workspaces import WorkspaceLimits, Workspaces


@dataclass(frozen=True)
class Hosting:
    """The server's way of sharing.

    Attributes:
        private: each visitor gets a workspace of their own (the default on a Space).
        shared_project: the one project every visitor labels (crowd mode), else None.
        limits: how many workspaces are kept and for how long without use.
        templates: project folders every new workspace starts with a copy of (the digits demo).
        host_password: typed on the page, it makes that tab the host (None: no password).
        host_users: signed-in names (``--auth`` users, the Space owner's Hugging Face name) who are the host.
        hf_login: the page offers "Sign in with Hugging Face" (a Space with ``hf_oauth: true``).
    """

    private: bool = False
    shared_project: str | None = None
    limits: WorkspaceLimits = field(default_factory=WorkspaceLimits)
    templates: Sequence[Path] = ()
    host_password: str | None = None
    host_users: Sequence[str] = ()
    hf_login: bool = False

    @property
    def crowd(self) -> bool:
        """Everyone labels one shared project."""
        return self.shared_project is not None

    def workspaces(self, projects_dir: Path, on_remove=None) -> Workspaces | None:
        """The visitors' workspaces under `projects_dir` when each visitor has one, else None."""
        if not self.private or self.crowd:
            return None
        return Workspaces(projects_dir, self.limits, self.templates, on_remove)

    def is_host(self, user: str | None, password: str | None = None) -> bool:
        """True for a host name, or the right host password; everyone is the host of their own projects (only a
        shared project has one host)."""
        if not self.crowd:
            return True
        if user and user in self.host_users:
            return True
        if self.host_password and password:
            return hmac.compare_digest(password.encode("utf-8"), self.host_password.encode("utf-8"))
        return False
