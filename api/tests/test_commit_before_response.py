"""A write is committed before its 2xx leaves: a client never holds a token or id the
database does not have, and a failed commit never answers success."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from api.db import make_engine, make_sessionmaker
from api.models.accounts import User
from kibamail.settings import Settings

PASSWORD = "correct horse battery staple 42"


def _user_exists(settings: Settings, email: str) -> bool:
    with make_sessionmaker(make_engine(settings.database.url))() as session:
        return session.scalar(select(User).where(User.email == email)) is not None


def test_a_failed_commit_is_an_error_not_a_201(
    client: TestClient, api_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    email = f"commit-{uuid.uuid4().hex[:8]}@example.com"

    def refuse(self: Session, *args: Any, **kwargs: Any) -> None:
        raise OperationalError("COMMIT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(Session, "commit", refuse)
    client_no_raise = TestClient(client.app, raise_server_exceptions=False)
    answer = client_no_raise.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    monkeypatch.undo()
    assert answer.status_code >= 500, answer.text
    assert not _user_exists(api_settings, email)


def test_a_session_token_works_on_the_very_next_request(client: TestClient) -> None:
    email = f"commit-{uuid.uuid4().hex[:8]}@example.com"
    signup = client.post("/v1/auth/signup", json={"email": email, "password": PASSWORD})
    assert signup.status_code == 201, signup.text
    for _ in range(20):
        login = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        me = client.get("/v1/me", headers={"Authorization": f"Bearer {login.json()['token']}"})
        assert me.status_code == 200, me.text
