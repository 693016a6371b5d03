"""Accepted means durable: every message the intake acknowledged survives a crash of Redis.

A SIGKILL alone loses nothing that redis-server already write()-ed: the kernel still holds
it. What fsync protects against is the host going down (power, kernel) with the page cache
unwritten, so redis-server runs here under a small LD_PRELOAD shim that keeps its
append-only file writes in process memory until fdatasync/fsync: a SIGKILL then loses
exactly what a power cut would. Under the shipped config (``appendfsync always``, from
``local_stack.services.redis_spec``) every acknowledged message is in the submission
stream after the restart; under ``everysec`` up to a second of acknowledged mail is gone
(the xfail case shows that the test can fail).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from kibamail.contracts import MessageMapping, OutboundMessage
from kibamail.intake import NotReplicated, submit, submit_async
from kibamail.redis_keys import RedisKeys
from kibamail.settings import RedisSettings, Settings, StackSettings
from local_stack.services import redis_spec
from local_stack.stack import Stack, free_port
from testing.submissions import submission_entries

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]

MESSAGES = 20_000
CONCURRENCY = 200

# write() to an append-only file is kept in memory until fdatasync()/fsync() on that fd
# (what the page cache would lose on a power cut); every other fd is untouched.
SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_FD 65536
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char kind[MAX_FD];            /* 0 unknown, 1 append-only file, 2 other */
static char *buf[MAX_FD];
static size_t len[MAX_FD], cap[MAX_FD];

static ssize_t (*real_write)(int, const void *, size_t);
static int (*real_fdatasync)(int), (*real_fsync)(int), (*real_close)(int);

static void init(void) {
    if (!real_write) {
        real_write = dlsym(RTLD_NEXT, "write");
        real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
        real_fsync = dlsym(RTLD_NEXT, "fsync");
        real_close = dlsym(RTLD_NEXT, "close");
    }
}

static int is_aof(int fd) {
    if (fd < 0 || fd >= MAX_FD) return 0;
    if (!kind[fd]) {
        char link[64], path[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, path, sizeof path - 1);
        path[n > 0 ? n : 0] = 0;
        kind[fd] = (n > 0 && strstr(path, ".aof")) ? 1 : 2;
    }
    return kind[fd] == 1;
}

static void drain(int fd) {  /* lock held */
    size_t off = 0;
    while (off < len[fd]) {
        ssize_t n = real_write(fd, buf[fd] + off, len[fd] - off);
        if (n <= 0) break;
        off += (size_t)n;
    }
    len[fd] = 0;
}

ssize_t write(int fd, const void *data, size_t n) {
    init();
    if (!is_aof(fd)) return real_write(fd, data, n);
    pthread_mutex_lock(&lock);
    if (len[fd] + n > cap[fd]) {
        cap[fd] = (len[fd] + n) * 2;
        buf[fd] = realloc(buf[fd], cap[fd]);
    }
    memcpy(buf[fd] + len[fd], data, n);
    len[fd] += n;
    pthread_mutex_unlock(&lock);
    return (ssize_t)n;
}

static void flush_fd(int fd) {
    if (fd >= 0 && fd < MAX_FD) {
        pthread_mutex_lock(&lock);
        if (len[fd]) drain(fd);
        pthread_mutex_unlock(&lock);
    }
}

int fdatasync(int fd) { init(); flush_fd(fd); return real_fdatasync(fd); }
int fsync(int fd) { init(); flush_fd(fd); return real_fsync(fd); }

int close(int fd) {
    init();
    flush_fd(fd);  /* a running server reopens what it closed: keep the file whole */
    if (fd >= 0 && fd < MAX_FD) kind[fd] = 0;
    return real_close(fd);
}
"""


@pytest.fixture(scope="module")
def power_cut_shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler for the power-cut shim")
    folder = tmp_path_factory.mktemp("shim")
    source, library = folder / "powercut.c", folder / "powercut.so"
    source.write_text(SHIM_C)
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl", "-lpthread"],
        check=True,
    )
    return library


def _message(index: int) -> tuple[OutboundMessage, MessageMapping]:
    message_id = f"{uuid.uuid4()}@durable.test"
    message = OutboundMessage(
        message_id=message_id,
        team_id="team-durable",
        mail_from="a@durable.test",
        recipients=[f"r{index}@example.org"],
        data=b"Subject: x\r\n\r\nbody " + str(index).encode() + b"\r\n",
    )
    mapping = MessageMapping(team_id="team-durable", tags=[str(index)])
    return message, mapping


async def _submit_until_killed(url: str, kill: Any) -> dict[str, str]:
    """Submit from CONCURRENCY tasks; SIGKILL Redis the moment MESSAGES are acknowledged
    (the other tasks' submissions are in flight). Returns entry id -> message id acked."""
    client = redis.asyncio.Redis.from_url(url, max_connections=CONCURRENCY)
    durability = RedisSettings(url=url, durability="aof_always")
    acked: dict[str, str] = {}
    killed = asyncio.Event()
    counter = iter(range(10 * MESSAGES))

    async def writer() -> None:
        while not killed.is_set():
            message, mapping = _message(next(counter))
            try:
                entry_id = await submit_async(client, message, mapping, durability=durability)
            except (redis.exceptions.ConnectionError, OSError):
                return  # in flight when Redis died: never acknowledged
            if killed.is_set():
                return  # answered after the kill: cannot happen, but never counted
            acked[entry_id] = message.message_id
            if len(acked) >= MESSAGES:
                kill()
                killed.set()

    try:
        await asyncio.gather(*(writer() for _ in range(CONCURRENCY)))
    finally:
        await client.aclose(close_connection_pool=True)
    return acked


def _lost_after_power_cut(tmp_path: Path, shim: Path, appendfsync: str) -> tuple[int, int]:
    """(acknowledged, lost) for one run of redis-server with that appendfsync."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    settings = Settings(
        redis=RedisSettings(url=url), stack=StackSettings(state_dir=tmp_path / "state")
    )
    stack = Stack(settings.stack.state_dir)
    spec = redis_spec(settings, appendfsync=appendfsync)
    assert "--appendonly" in spec.argv and appendfsync in spec.argv
    spec.env["LD_PRELOAD"] = str(shim)
    stack.start(spec)
    try:
        acked = asyncio.run(_submit_until_killed(url, lambda: stack.kill("redis")))
        assert len(acked) >= MESSAGES
        spec.env.pop("LD_PRELOAD")
        stack.start(spec)  # same data dir: loads the append-only file
        client = redis.Redis.from_url(url)
        kept = {
            (eid.decode() if isinstance(eid, bytes) else eid)
            for eid, _fields in submission_entries(client)
        }
        lost = [eid for eid in acked if eid not in kept]
        lost_mappings = [
            mid
            for mid in acked.values()
            if not client.exists(RedisKeys.message_mapping("team-durable", mid))
        ]
        client.close()
        return len(acked), max(len(lost), len(lost_mappings))
    finally:
        stack.stop_all()


def test_every_acknowledged_message_survives_a_power_cut(
    tmp_path: Path, power_cut_shim: Path
) -> None:
    acknowledged, lost = _lost_after_power_cut(tmp_path, power_cut_shim, "always")
    assert acknowledged >= MESSAGES and lost == 0


@pytest.mark.xfail(reason="everysec acknowledges before the fsync: a power cut loses up to 1 s")
def test_everysec_would_lose_acknowledged_messages(tmp_path: Path, power_cut_shim: Path) -> None:
    acknowledged, lost = _lost_after_power_cut(tmp_path, power_cut_shim, "everysec")
    assert acknowledged >= MESSAGES and lost == 0


def test_replica_wait_acknowledges_only_what_the_replicas_confirmed(tmp_path: Path) -> None:
    """``durability="replica_wait"``: WAIT on the writing connection; too few replicas ->
    NotReplicated (the caller must not acknowledge), and the write is still atomic."""
    primary_port, replica_port = free_port(), free_port()
    url = f"redis://127.0.0.1:{primary_port}/0"
    stack = Stack(tmp_path / "state")
    primary = redis_spec(
        Settings(redis=RedisSettings(url=url), stack=StackSettings(state_dir=tmp_path / "p")),
        durable=False,
    )
    replica = redis_spec(
        Settings(
            redis=RedisSettings(url=f"redis://127.0.0.1:{replica_port}/0"),
            stack=StackSettings(state_dir=tmp_path / "r"),
        ),
        durable=False,
    )
    replica.name = "replica"
    replica.argv += ["--replicaof", "127.0.0.1", str(primary_port)]
    primary.argv += ["--repl-diskless-sync-delay", "0"]
    stack.start(primary)
    stack.start(replica)
    client = redis.Redis.from_url(url)
    replica_client = redis.Redis(port=replica_port)
    try:
        for _ in range(300):
            if replica_client.info("replication").get("master_link_status") == "up":
                break
            time.sleep(0.1)
        one = RedisSettings(url=url, durability="replica_wait", wait_replicas=1)
        message, mapping = _message(1)
        entry_id = submit(client, message, mapping, durability=one)
        [(first_id, _fields)] = submission_entries(client) or []
        assert first_id.decode() == entry_id

        async def submit_async_too() -> str:
            async_client = redis.asyncio.Redis.from_url(url)
            try:
                return await submit_async(async_client, *_message(2), durability=one)
            finally:
                await async_client.aclose()

        assert asyncio.run(submit_async_too()) > entry_id
        two = RedisSettings(url=url, durability="replica_wait", wait_replicas=2, wait_timeout_ms=50)
        message, mapping = _message(3)
        with pytest.raises(NotReplicated, match="1 of 2 replicas"):
            submit(client, message, mapping, durability=two)
    finally:
        client.close()
        replica_client.close()
        stack.stop_all()
