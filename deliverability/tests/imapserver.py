"""A minimal in-process IMAP4rev1 server (just what imaplib polling uses), on loopback.

LOGIN, SELECT, UID SEARCH UNSEEN, UID FETCH (BODY.PEEK[]), UID STORE +FLAGS, LOGOUT.
"""

from __future__ import annotations

import re
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Mailbox:
    username: str
    password: str
    messages: list[bytes]
    seen: set[int] = field(default_factory=set)


class _Handler(socketserver.StreamRequestHandler):
    mailbox: Mailbox

    def _send(self, line: str | bytes) -> None:
        self.wfile.write(line if isinstance(line, bytes) else line.encode())

    def handle(self) -> None:
        box = self.server.mailbox  # type: ignore[attr-defined]
        self._send("* OK IMAP4rev1 test server ready\r\n")
        authed = False
        while raw := self.rfile.readline(65536):
            tag, _, rest = raw.decode().rstrip("\r\n").partition(" ")
            command, _, args = rest.partition(" ")
            command = command.upper()
            if command == "UID":
                command, _, args = args.partition(" ")
                command = "UID " + command.upper()
            if command == "CAPABILITY":
                self._send(f"* CAPABILITY IMAP4rev1\r\n{tag} OK CAPABILITY completed\r\n")
            elif command == "LOGIN":
                user, password = (a.strip('"') for a in args.split(" ", 1))
                authed = (user, password) == (box.username, box.password)
                self._send(f"{tag} OK LOGIN completed\r\n" if authed else f"{tag} NO denied\r\n")
            elif not authed and command != "LOGOUT":
                self._send(f"{tag} NO login first\r\n")
            elif command == "SELECT":
                self._send(
                    f"* {len(box.messages)} EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY 1]\r\n"
                    f"{tag} OK [READ-WRITE] SELECT completed\r\n"
                )
            elif command == "UID SEARCH":
                unseen = [str(i + 1) for i in range(len(box.messages)) if i + 1 not in box.seen]
                self._send(f"* SEARCH {' '.join(unseen)}\r\n{tag} OK SEARCH completed\r\n")
            elif command == "UID FETCH":
                uid = int(args.split(" ", 1)[0])
                body = box.messages[uid - 1]
                self._send(f"* {uid} FETCH (UID {uid} BODY[] {{{len(body)}}}\r\n".encode() + body)
                self._send(f")\r\n{tag} OK FETCH completed\r\n")
            elif command == "UID STORE":
                uid = int(args.split(" ", 1)[0])
                if re.search(r"\\Seen", args):
                    box.seen.add(uid)
                self._send(f"* {uid} FETCH (UID {uid} FLAGS (\\Seen))\r\n{tag} OK STORE done\r\n")
            elif command == "LOGOUT":
                self._send(f"* BYE\r\n{tag} OK LOGOUT completed\r\n")
                return
            else:
                self._send(f"{tag} BAD unsupported\r\n")


@contextmanager
def loopback_imap(mailbox: Mailbox) -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.mailbox = mailbox  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
