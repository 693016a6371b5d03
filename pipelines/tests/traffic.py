"""Realistic test traffic: transactional templates and a newsletter, as RFC 5322 bytes."""

from __future__ import annotations

import random

DOMAINS = [
    "gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "gmx.de",
    "web.de", "orange.fr", "libero.it", "proton.me", "aol.com", "comcast.net",
    "acme-corp.com", "initech.io", "globex.net", "umbrella.org", "hooli.com",
    "stark.industries", "wayne.enterprises", "yandex.ru", "mail.ru", "qq.com",
    "naver.com", "t-online.de", "free.fr", "btinternet.com", "shaw.ca", "bigpond.com",
]  # fmt: skip
NAMES = ["Alice", "Bob", "Chidi", "Dana", "Eleanor", "Farid", "Grace", "Hiro", "Ines", "Jun"]
PRODUCTS = ["USB-C cable", "Desk lamp", "Notebook", "Coffee beans", "Headphones", "Backpack"]
STREETS = ["Main St", "Rue Neuve", "Hauptstr."]
COMMENTS = [
    "Looks great, merging after CI passes.",
    "Can we move the meeting to Thursday?",
    "I think the second chart has the wrong axis.",
    "Thanks! That fixed the login issue for me.",
    "Please review the updated contract draft.",
    "Our invoice shows the wrong VAT number.",
]


def recipient(rng: random.Random) -> str:
    return f"{rng.choice(NAMES).lower()}{rng.randint(1, 99999)}@{rng.choice(DOMAINS)}"


def _message(subject: str, to: str, body: str, **headers: str) -> bytes:
    """Plain-text RFC 5322 bytes (formatted directly: EmailMessage is slow for thousands)."""
    lines = [
        "From: Shop <no-reply@shop.example>",
        f"To: {to}",
        f"Subject: {subject}",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: 8bit",
        *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n" + body.replace("\n", "\r\n")).encode()


def transactional(rng: random.Random) -> tuple[bytes, str]:
    """A password reset, a receipt or a notification, each personal in content."""
    to, name = recipient(rng), rng.choice(NAMES)
    kind = rng.random()
    if kind < 0.35:
        token = rng.randbytes(16).hex()
        body = (
            f"Hi {name},\n\nSomeone asked to reset the password of your account {to}.\n"
            f"Use this link within 30 minutes: https://app.shop.example/reset?token={token}\n"
            f"If it was not you, ignore this message; your password stays the same.\n"
        )
        return _message("Reset your password", to, body), to
    if kind < 0.7:
        items = rng.sample(PRODUCTS, rng.randint(1, 4))
        lines = "\n".join(
            f"  {rng.randint(1, 3)} x {item}  {rng.randint(3, 90)}.99 EUR" for item in items
        )
        order = rng.randint(100000, 999999)
        body = (
            f"Thanks for your order #{order}, {name}.\n\n{lines}\n\n"
            f"Shipping to {rng.randint(1, 200)} {rng.choice(STREETS)}\n"
            f"Total charged to card ending {rng.randint(1000, 9999)}: "
            f"{rng.randint(10, 400)}.00 EUR\n"
        )
        return _message(f"Your receipt for order #{order}", to, body), to
    commenter = rng.choice(NAMES)
    body = (
        f'{commenter} commented on your document "Q{rng.randint(1, 4)} plan '
        f'v{rng.randint(1, 9)}":\n\n  {rng.choice(COMMENTS)} (ref {rng.randint(1, 10**6)})\n\n'
        "Manage your notification settings or unsubscribe from these notifications "
        "in your account.\n"
    )
    return _message(f"{commenter} commented on your document", to, body), to


NEWSLETTER_BODY = (
    "View this email in your browser: https://news.shop.example/view?utm_source=newsletter\n\n"
    "BLACK WEEK SALE: 40% off every backpack and desk lamp until Sunday.\n"
    "Shop now at https://shop.example/sale?utm_campaign=black-week and use promo code BW40.\n"
    "Our new coffee subscription ships every two weeks, cancel anytime.\n\n"
    "You receive this newsletter because you signed up at shop.example. Unsubscribe here.\n"
)


def newsletter(rng: random.Random) -> tuple[bytes, str]:
    to = recipient(rng)
    data = _message(
        "Black Week: 40% off everything",
        to,
        NEWSLETTER_BODY,
        List_Unsubscribe="<https://shop.example/unsub?u=1>",
    )
    return data, to
