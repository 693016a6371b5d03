"""The webhook SSRF filter itself, with http and private networks closed (the default)."""

from __future__ import annotations

import pytest

from api.webhooks.ssrf import UnsafeWebhookUrl, WebhookUrlGuard

PUBLIC_V4 = "93.184.216.34"
FAKE_DNS = {
    "hooks.test": [PUBLIC_V4],
    "v6.hooks.test": ["2606:4700::1111"],
    "localhost": ["127.0.0.1"],
    "metadata.test": ["169.254.169.254"],
    "mixed.test": [PUBLIC_V4, "10.0.0.5"],
    "mapped.test": ["::ffff:10.1.2.3"],
}


def fake_resolver(host: str, port: int) -> list[str]:
    if host not in FAKE_DNS:
        raise UnsafeWebhookUrl(f"host {host!r} does not resolve")
    return FAKE_DNS[host]


STRICT = WebhookUrlGuard(resolver=fake_resolver)
pytestmark = pytest.mark.unit

REFUSED = [
    ("http://hooks.test/h", "https"),
    ("ftp://hooks.test/h", "https"),
    ("https://user:pw@hooks.test/h", "credentials"),
    ("https://hooks.test@127.0.0.1/h", "credentials"),
    ("https://127.0.0.1/h", "loopback"),
    ("https://127.0.0.1:6379/", "loopback"),
    ("https://[::1]/h", "loopback"),
    ("https://[::ffff:127.0.0.1]/h", "loopback"),
    ("https://[::ffff:a9fe:a9fe]/h", "metadata"),
    ("https://[2002:7f00:1::]/h", "loopback"),
    ("https://[64:ff9b::a9fe:a9fe]/h", "metadata"),
    ("https://2130706433/h", "ambiguous"),
    ("https://0177.0.0.1/h", "ambiguous"),
    ("https://0x7f.0.0.1/h", "ambiguous"),
    ("https://0x7f000001/h", "ambiguous"),
    ("https://127.1/h", "ambiguous"),
    ("https://1.2.3.256/h", "malformed"),
    ("https://169.254.169.254/latest/meta-data/", "metadata"),
    ("https://[fd00:ec2::254]/", "metadata"),
    ("https://100.100.100.200/", "metadata"),
    ("https://10.0.0.1/", "private"),
    ("https://172.16.0.1/", "private"),
    ("https://192.168.1.1/", "private"),
    ("https://[fc00::1]/", "private"),
    ("https://0.0.0.0/", "unspecified"),
    ("https://[::]/", "unspecified"),
    ("https://224.0.0.1/", "multicast"),
    ("https://[ff02::1]/", "multicast"),
    ("https://240.0.0.1/", "reserved"),
    ("https://[fe80::1]/", "link-local"),
    ("https://[fe80::1%25eth0]/", "zone id"),
    ("https://localhost/h", "loopback"),
    ("https://metadata.test/h", "metadata"),
    ("https://mixed.test/h", "private"),
    ("https://mapped.test/h", "private"),
    ("https://nowhere.test/h", "does not resolve"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_refused_urls_say_why(url: str, reason: str) -> None:
    with pytest.raises(UnsafeWebhookUrl, match=reason):
        STRICT.check(url)


def test_public_targets_are_pinned_to_the_checked_address() -> None:
    target = STRICT.check("https://hooks.test/in?x=1")
    assert target.connect_url == f"https://{PUBLIC_V4}:443/in?x=1"
    assert target.host_header == "hooks.test" and target.sni_hostname == "hooks.test"
    v6 = STRICT.check("https://v6.hooks.test:8443/h")
    assert v6.connect_url == "https://[2606:4700::1111]:8443/h"
    assert v6.host_header == "v6.hooks.test:8443"
    literal = STRICT.check("https://[2606:4700::1111]/h")
    assert literal.sni_hostname is None


def test_settings_open_http_and_private_networks_only_when_asked() -> None:
    with pytest.raises(UnsafeWebhookUrl, match="https"):
        WebhookUrlGuard(allow_private=True, resolver=fake_resolver).check("http://127.0.0.1/")
    with pytest.raises(UnsafeWebhookUrl, match="loopback"):
        WebhookUrlGuard(allow_http=True, resolver=fake_resolver).check("http://127.0.0.1/")
    opened = WebhookUrlGuard(allow_http=True, allow_private=True, resolver=fake_resolver)
    assert opened.check("http://localhost:9/h").connect_url == "http://127.0.0.1:9/h"
