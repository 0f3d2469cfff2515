"""Who is on the page: the tab's server-signed id, the visitor's workspace or name, and whether they are the host.

A tab id is a token the server signed (`app.core.tokens`); in private workspaces and on a shared project it is the
visitor's own token (kept by the browser across tabs and reloads) joined with the tab's, so every tab of a visitor
has the same workspace and the same name. Nobody can make one up, so nobody can pose as another tab or visitor.
"""

from __future__ import annotations

import threading

import gradio as gr

from app.core import tokens
from app.ui.errors import friendly
from app.ui.hosting import Hosting
from app.ui.sessions import RELOAD, Sessions

HOST_ONLY = "Only the host of this shared project can do that."


def new_client_id(candidate: str | None = None) -> str:
    """A tab id: the browser's own (kept across reloads of a tab) when this server signed it, else a fresh one."""
    return candidate if tokens.verify(candidate) else tokens.new_token()


def annotator(client: str | None, user: str | None = None) -> str:
    """Who labeled: the signed-in name; without sign-in "user" and the tab, so undo takes back only your labels.

    The tab id is one the server signed (`new_client_id`), so nobody can pose as another tab. With a visitor token
    the id starts with the visitor's own part, the same in all their tabs.
    """
    if user:
        return user
    return f"user#{(client or 'anonymous')[:8]}"


class Visitors:
    """The tabs and visitors of one page.

    Args:
        sessions: where the page's projects are (private workspaces are made here on a first visit).
        hosting: how the server is shared (who the host is).
    """

    def __init__(self, sessions: Sessions, hosting: Hosting) -> None:
        self.sessions = sessions
        self.hosting = hosting
        self._users: dict[str, str] = {}  # tab id -> the name its visitor signed in with
        self._hosts: set[str] = set()  # tab ids of the host
        self._lock = threading.Lock()

    @property
    def per_visitor(self) -> bool:
        """Each visitor has their own token (a workspace, or a name on the shared project)."""
        return self.sessions.private or self.hosting.crowd

    def new_client(self, candidate: str | None = None) -> str:
        """The tab's id when this server signed it; a fresh one otherwise, except where a visitor token is needed."""
        if tokens.verify_client(candidate):
            return str(candidate)
        if self.per_visitor:
            raise gr.Error(RELOAD)
        return tokens.new_token()

    @friendly
    def arrive(self, visitor: str | None, candidate: str | None, user: str | None = None) -> tuple[str, str]:
        """Page load: (the visitor's token, the tab's id); both are kept by the browser for its reloads.

        Without visitor tokens the first is empty. Otherwise a token this server did not sign is replaced (in
        private workspaces that makes a fresh workspace, with a copy of the demo), and the tab id is kept only
        with its own visitor. The signed-in name, if any, is remembered for the tab's labels.
        """
        token = ""
        if not self.per_visitor:
            client = new_client_id(candidate)
        else:
            token = str(visitor) if tokens.verify(visitor) else tokens.new_token()
            if self.sessions.workspaces is not None:
                self.sessions.workspaces.open(tokens.token_id(token))
            same = tokens.workspace_of(candidate) == tokens.token_id(token)
            tab = str(candidate).split(".")[1] if same else tokens.new_token()
            client = tokens.join_client(token, tab)
        self.remember_user(client, user)
        return token, client

    def remember_user(self, client: str, user: str | None) -> None:
        """The tab's visitor signed in as `user` (sign-in, or Hugging Face login): their labels carry that name."""
        with self._lock:
            if user:
                self._users[client] = user
                if user in self.hosting.host_users:
                    self._hosts.add(client)
            else:
                self._users.pop(client, None)

    def who(self, client: str | None, user: str | None = None) -> str:
        """The annotator name of this tab: the signed-in name, else the visitor's id (see `annotator`)."""
        return annotator(client, user or self._users.get(client or ""))

    # ------------------------------------------------------------------------------------------ the host
    def sign_in_host(self, client: str, password: str | None) -> bool:
        """The host password typed on the page makes this tab the host; returns whether it did."""
        if not self.hosting.is_host(None, password):
            return False
        with self._lock:
            self._hosts.add(client)
        return True

    def is_host(self, client: str | None) -> bool:
        """Whether this tab may export and change settings (everyone may, except on a shared project)."""
        return not self.hosting.crowd or (client or "") in self._hosts

    def require_host(self, client: str | None) -> None:
        """Refuse a host-only action from a visitor of a shared project."""
        if not self.is_host(client):
            raise gr.Error(HOST_ONLY)
