"""A Python teacher's device that does what the grid's outbox and sync.js do (DESIGN §6).

Entries are signed once, with a stable ``entry_id``, and kept in the outbox until the server
answers ``accepted`` or ``duplicate`` for them. Network errors, 5xx and 429 are retried; a
``csrf`` answer fetches a fresh token once; any other answer is an error the person would see,
so here it is kept in ``refused`` for the test to look at.
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from journal.ledger import entry as ledger_entry

from .servers import Teacher

BATCH_SIZE = 200  # as sync.js


@dataclass
class Exchange:
    """One HTTP request's outcome, for the load figures."""

    kind: str
    seconds: float
    status: int | str  # the HTTP status, or the network error's name
    server: str = ""  # the base URL it went to


class SignedOut(Exception):
    """A 401: the outbox is kept, the person must sign in again."""


@dataclass
class Device:
    """One teacher's device: its key, its device_seq counter and its outbox."""

    teacher: Teacher
    base_url: str
    cookie: str
    # Other app servers of the same journal: each request goes to one of them or to base_url,
    # at random, as behind a load balancer.
    mirrors: tuple[str, ...] = ()
    timeout: float = 30
    rng: random.Random = field(default_factory=random.Random)
    on_exchange: Callable[[Exchange], None] | None = None
    outbox: dict[str, dict[str, Any]] = field(default_factory=dict)  # entry_id -> submission
    made: list[str] = field(default_factory=list)
    stored: dict[str, int] = field(default_factory=dict)  # entry_id -> seq
    refused: list[dict[str, Any]] = field(default_factory=list)
    retries: int = 0
    duplicates: int = 0  # answers "duplicate": a retry of a batch whose answer was lost
    csrf: str = ""
    device_seq: int = 0

    # -- making entries --------------------------------------------------------------------------

    def make_entry(self, kind: str, lesson: int, student: int) -> dict[str, Any]:
        """Sign a new attendance mark or FO grade and put it in the outbox."""
        payload: dict[str, Any] = {
            "v": 1,
            "entry_id": str(uuid.uuid4()),
            "journal": self.teacher.origin,
            "kind": kind,
            "device_id": self.teacher.kid,
            "device_seq": self.device_seq,
            "author": self.teacher.user_id,
            "created_at": "2026-11-16T09:05:00Z",
            "lesson": lesson,
            "student": student,
        }
        if kind == "grade":
            payload.update(component="FO", value={"score": self.rng.randint(1, 10)})
        else:
            payload.update(value=self.rng.choice(["absent", "late", "sick", "excused"]))
        self.device_seq += 1
        signature = ledger_entry.sign_payload(
            self.teacher.private_key, ledger_entry.canonical_json(payload)
        )
        submission = {
            "payload": payload,
            "alg": "ed25519",
            "kid": self.teacher.kid,
            "sig": base64.b64encode(signature).decode(),
        }
        self.outbox[payload["entry_id"]] = submission
        self.made.append(payload["entry_id"])
        return submission

    # -- HTTP ----------------------------------------------------------------------------------

    def request(
        self, kind: str, method: str, path: str, body: bytes | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """One request on a new connection (gunicorn's sync workers close after each answer).
        Network errors propagate as OSError / HTTPException."""
        headers = {"Cookie": f"session={self.cookie}", "Accept": "application/json"}
        if body is not None:
            headers.update({"Content-Type": "application/json", "X-CSRFToken": self.csrf})
        server = self.rng.choice((self.base_url, *self.mirrors)) if self.mirrors else self.base_url
        host, port = server.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=self.timeout)
        started = time.perf_counter()
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self._record(kind, started, type(exc).__name__, server)
            raise
        finally:
            connection.close()
        self._record(kind, started, response.status, server)
        answer_headers = {name.lower(): value for name, value in response.getheaders()}
        cookie = answer_headers.get("set-cookie", "")
        if cookie.startswith("session="):
            self.cookie = cookie.split(";", 1)[0].removeprefix("session=")
        return response.status, answer_headers, data

    def _record(self, kind: str, started: float, status: int | str, server: str) -> None:
        if self.on_exchange is not None:
            self.on_exchange(Exchange(kind, time.perf_counter() - started, status, server))

    def refresh_session(self) -> None:
        status, _headers, data = self.request("session", "GET", "/api/sync/session")
        if status == 401:
            raise SignedOut()
        if status != 200:
            raise http.client.HTTPException(f"GET /api/sync/session answered {status}")
        self.csrf = json.loads(data)["csrf_token"]

    # -- syncing ---------------------------------------------------------------------------------

    def send_batch(self, batch: list[dict[str, Any]]) -> float | None:
        """Send one batch. None when the server answered it; else seconds to wait before a
        retry (network error, 5xx, 429), as sync.js's retryLater."""
        body = json.dumps({"entries": batch}, ensure_ascii=False).encode()
        try:
            if not self.csrf:
                self.refresh_session()
            status, headers, data = self.request("sync", "POST", "/api/sync/entries", body)
            if status == 400 and _error(data) == "csrf":
                self.refresh_session()
                status, headers, data = self.request("sync", "POST", "/api/sync/entries", body)
        except (OSError, http.client.HTTPException):
            self.retries += 1
            return 0.05 + self.rng.random() * 0.1
        if status == 401:
            raise SignedOut()
        if status == 429 or status >= 500:
            self.retries += 1
            return float(headers.get("retry-after") or 0) or 0.1
        try:
            answer = json.loads(data)
        except ValueError:
            self.retries += 1
            return 0.1
        if status != 200:
            # The whole batch is refused (too large, not JSON...): the person sees it.
            self.refused.extend({"status": status, "answer": answer, "entry": e} for e in batch)
            for submission in batch:
                self.outbox.pop(submission["payload"]["entry_id"], None)
            return None
        for result in answer["results"]:
            submission = batch[result["index"]]
            entry_id = submission["payload"]["entry_id"]
            if result["status"] in ("accepted", "duplicate"):
                self.stored[entry_id] = result["seq"]
                self.duplicates += result["status"] == "duplicate"
            else:
                self.refused.append({"result": result, "entry": submission})
            self.outbox.pop(entry_id, None)
        return None

    def sync(self, *, batch_size: int = BATCH_SIZE) -> bool:
        """Send the outbox in batches; False (outbox kept) at the first batch to retry."""
        pending = list(self.outbox.values())
        for start in range(0, len(pending), batch_size):
            wait = self.send_batch(pending[start : start + batch_size])
            if wait is not None:
                time.sleep(wait)
                return False
        return True

    def drain(self, deadline: float, *, batch_size: int = BATCH_SIZE) -> None:
        """Retry until the outbox is empty, or fail at ``deadline`` (time.monotonic())."""
        while self.outbox:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.outbox)} entries still unsent at the deadline")
            self.sync(batch_size=batch_size)

    def read_grid(self) -> int:
        """GET the grid page as the browser does; the HTTP status (network errors raise)."""
        status, _headers, _data = self.request("grid", "GET", self.teacher.grid_path)
        return status


def _error(data: bytes) -> str | None:
    try:
        answer = json.loads(data)
    except ValueError:
        return None
    return answer.get("error") if isinstance(answer, dict) else None
