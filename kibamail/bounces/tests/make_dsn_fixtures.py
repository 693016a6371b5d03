# ruff: noqa: E501  (fixture data tables read best one case per line)
"""Generate the rfc3464 and notices fixture families (``python -m kibamail.bounces.tests.make_dsn_fixtures``).

Each MTA's DSN is reproduced from its documented shape (subjects, human parts, field
spellings), with invented hosts and people. Labels follow the issue's rule: only user
unknown, host unknown, moved and null MX with a 5xx code suppress.
"""

from __future__ import annotations

from email.header import Header
from typing import Any

from .fixture_kit import DATE, Rcpt, dsn, expect, original, write

# reason label, suppress, status, Diagnostic-Code (``{a}`` = the recipient)
DIAG = {
    "unknown": (
        "user_unknown",
        True,
        "5.1.1",
        "smtp; 550 5.1.1 <{a}>: Recipient address rejected: User unknown in virtual mailbox table",
    ),
    "full": ("mailbox_full", False, "5.2.2", "smtp; 552 5.2.2 <{a}>: Mailbox full, quota exceeded"),
    "blocked": (
        "blocked",
        False,
        "5.7.1",
        "smtp; 554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org",
    ),
    "spam": (
        "spam_detected",
        False,
        "5.7.1",
        "smtp; 550 5.7.1 Message rejected because it was identified as spam",
    ),
    "dmarc": (
        "auth_failure",
        False,
        "5.7.26",
        "smtp; 550 5.7.26 Unauthenticated email from shop.example.com is not accepted due to domain's DMARC policy",
    ),
    "nohost": (
        "host_unknown",
        True,
        "5.4.4",
        "X-Postfix; Host or domain name not found. Name service error for name=nosuch.example.net type=A: Host not found",
    ),
    "nullmx": (
        "null_mx",
        True,
        "5.1.10",
        "X-Postfix; Domain example.net does not accept mail (nullMX)",
    ),
    "expired": (
        "expired",
        False,
        "4.4.7",
        "smtp; 421 4.4.7 Message expired: delivery time expired, could not deliver in 5 days",
    ),
    "toobig": (
        "message_too_big",
        False,
        "5.3.4",
        "smtp; 552 5.3.4 Message size exceeds fixed maximum message size",
    ),
    "disabled": (
        "suspended",
        False,
        "5.2.1",
        "smtp; 550 5.2.1 The email account that you tried to reach is disabled.",
    ),
    "moved": (
        "has_moved",
        True,
        "5.1.6",
        "smtp; 550 5.1.6 Recipient address has moved; no forwarding address",
    ),
    "relay": ("no_relaying", False, "5.7.1", "smtp; 554 5.7.1 <{a}>: Relay access denied"),
    "conns": (
        "too_many_connections",
        False,
        "4.7.0",
        "smtp; 421 4.7.0 Too many concurrent SMTP connections from this IP address; please try again later",
    ),
    "virus": (
        "virus_detected",
        False,
        "5.7.1",
        "smtp; 554 5.7.1 Virus detected: Eicar-Test-Signature",
    ),
    "sender": (
        "sender_rejected",
        False,
        "5.1.8",
        "smtp; 553 5.1.8 <news@shop.example.com>: Sender address rejected: Domain not found",
    ),
    "unverified4": (
        "user_unknown",
        False,
        "4.1.1",
        "smtp; 450 4.1.1 <{a}>: Recipient address rejected: unverified address: host mx.example.org said: 550 5.1.1 User unknown",
    ),
    "unavailable": (
        "user_unknown",
        True,
        "5.5.0",
        "smtp; 550 5.5.0 Requested action not taken: mailbox unavailable",
    ),
    "o365": (
        "user_unknown",
        True,
        "5.1.10",
        "smtp; 550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
    ),
    "gmail": (
        "user_unknown",
        True,
        "5.1.1",
        "smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos or unnecessary spaces. For more information, go to https://support.google.com/mail/?p=NoSuchUser",
    ),
    "policy": (
        "policy_violation",
        False,
        "5.7.1",
        "smtp; 550 5.7.1 Message rejected due to local policy",
    ),
}

STYLES: dict[str, dict[str, Any]] = {
    "postfix": {},
    "exim": {
        "sender": "Mail Delivery System <Mailer-Daemon@mail.example.net>",
        "subject": "Mail delivery failed: returning message to sender",
        "human": "This message was created automatically by mail delivery software.\n\n"
        "A message that you sent could not be delivered to one or more of its\n"
        "recipients. This is a permanent error.\n",
        "reporting_mta": "dns; mail.example.net",
    },
    "sendmail": {
        "sender": "Mail Delivery Subsystem <MAILER-DAEMON@relay.example.org>",
        "subject": "Returned mail: see transcript for details",
        "human": f"The original message was received at {DATE}\n"
        "from mta1.shop.example.com [192.0.2.10]\n\n"
        "   ----- Transcript of session follows -----\n"
        "... while talking to mx.example.org.:\n>>> RCPT To:\n",
        "reporting_mta": "dns; relay.example.org",
    },
    "gmail": {
        "sender": "Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
        "subject": "Delivery Status Notification (Failure)",
        "human": "** Message not delivered **\n\nThere was a problem delivering your message.\n",
        "reporting_mta": "dns; googlemail.com",
    },
    "office365": {
        "sender": "postmaster@contoso.example.com",
        "subject": "Undeliverable: Your March newsletter",
        "human": "Delivery has failed to these recipients or groups:\n\n"
        "Your message couldn't be delivered.\n",
        "reporting_mta": "dns; AM0PR01MB1234.eurprd01.prod.exchangelabs.com",
    },
    "ses": {
        "sender": "MAILER-DAEMON@amazonses.com",
        "subject": "Delivery Status Notification (Failure)",
        "human": "An error occurred while trying to deliver the mail to the following recipients:\n",
        "reporting_mta": "dns; a8-30.smtp-out.amazonses.com",
    },
}

PLAN = {
    "postfix": ["unknown", "full", "blocked", "nohost", "nullmx", "dmarc", "relay", "unverified4"],
    "exim": ["unknown", "expired", "toobig", "conns"],
    "sendmail": ["unknown", "sender", "virus", "policy"],
    "gmail": ["gmail", "disabled", "spam", "full"],
    "office365": ["o365", "unavailable", "moved", "dmarc"],
    "ses": ["unknown", "blocked", "full"],
}


def _one(n: int, style: str, key: str, **kw: object) -> None:
    reason, suppress, status, diag = DIAG[key]
    rcpt = f"{key}.{style}{n}@example.org"
    args = {**STYLES[style], **kw}
    text = dsn([Rcpt(rcpt, status=status, diagnostic=diag)], n=n, **args)
    write(
        "rfc3464",
        f"{style}_{key}",
        text,
        expect("bounce", (rcpt, "bounce", reason, suppress, status)),
    )


def rfc3464() -> None:
    n = 100
    for style, keys in PLAN.items():
        for key in keys:
            n += 1
            _one(n, style, key)
    _specials(n)


def _lab(rcpt: str, key: str) -> tuple[str, str, str, bool, str]:
    reason, suppress, status, _ = DIAG[key]
    return (rcpt, "bounce", reason, suppress, status)


def _specials(n: int) -> None:
    a, b, c = "ann@example.org", "bob@example.net", "cy@example.com"
    three = [
        Rcpt(a, *DIAG["unknown"][2:]),
        Rcpt(b, *DIAG["full"][2:]),
        Rcpt(c, *DIAG["blocked"][2:]),
    ]
    label3 = expect("bounce", _lab(a, "unknown"), _lab(b, "full"), _lab(c, "blocked"))
    write("rfc3464", "multi_three_recipients", dsn(three, n=201), label3)
    write("rfc3464", "multi_no_blank_lines", dsn(three, n=202, blank_between=False), label3)
    two = [Rcpt(a, *DIAG["unknown"][2:]), Rcpt(b, *DIAG["nohost"][2:])]
    label2 = expect("bounce", _lab(a, "unknown"), _lab(b, "nohost"))
    write("rfc3464", "status_base64", dsn(two, n=203, status_cte="base64"), label2)
    write(
        "rfc3464", "status_quoted_printable", dsn(two, n=204, status_cte="quoted-printable"), label2
    )
    write("rfc3464", "status_as_text_plain", dsn(two, n=205, status_type="text/plain"), label2)
    write("rfc3464", "crlf_line_endings", dsn(two, n=206), label2, crlf=True)
    # RFC 6533: UTF-8 addresses in message/global-delivery-status and a message/global original.
    jose = "josé@example.org"
    glob = [
        Rcpt(
            jose,
            "5.1.1",
            "smtp; 550 5.1.1 <{a}>: mailbox does not exist",
            final_field="Final-Recipient: rfc822; {a}",
        )
    ]
    text = dsn(
        glob,
        n=207,
        status_type="message/global-delivery-status",
        status_cte="8bit",
        original_type="message/global",
        human_charset="utf-8",
        human_cte="8bit",
    )
    write(
        "rfc3464",
        "global_dsn_utf8",
        text,
        expect("bounce", (jose, "bounce", "user_unknown", True, "5.1.1")),
    )
    folded = Rcpt(
        a,
        "5.1.1",
        "smtp; 550-5.1.1 The email account that you tried to reach does\n    not exist. Please try double-checking the recipient's email address for\n    typos or unnecessary spaces.",
    )
    write(
        "rfc3464", "folded_diagnostic", dsn([folded], n=208), expect("bounce", _lab(a, "unknown"))
    )
    odd = Rcpt(
        a, "5.1.1", "SMTP;550 5.1.1 user unknown", final_field="Final-Recipient: RFC822 ;  <{a}>"
    )
    write("rfc3464", "odd_spacing_angle", dsn([odd], n=209), expect("bounce", _lab(a, "unknown")))
    nofinal = Rcpt(
        b,
        "5.1.1",
        "smtp; 550 5.1.1 unknown recipient",
        final_field="",
        extra=["Original-Recipient: rfc822;{a}"],
    )
    write(
        "rfc3464", "no_final_recipient", dsn([nofinal], n=210), expect("bounce", _lab(b, "unknown"))
    )
    mangled = Rcpt(
        c,
        "5.1.1",
        "smtp; 550 5.1.1 <cy>... User unknown",
        final_field="Final-Recipient: RFC822; cy",
        extra=["X-Actual-Recipient: rfc822; {a}"],
    )
    write(
        "rfc3464",
        "mangled_final_x_actual",
        dsn([mangled], n=211, **STYLES["sendmail"]),
        expect("bounce", _lab(c, "unknown")),
    )
    cut = original(a, n=212, truncate=True)
    write(
        "rfc3464",
        "truncated_original",
        dsn([Rcpt(a, *DIAG["unknown"][2:])], n=212, original_text=cut),
        expect("bounce", _lab(a, "unknown")),
    )
    write(
        "rfc3464",
        "no_original",
        dsn([Rcpt(a, *DIAG["nullmx"][2:])], n=213, original_type=""),
        expect("bounce", _lab(a, "nullmx")),
    )
    write(
        "rfc3464",
        "rfc822_headers_original",
        dsn([Rcpt(a, *DIAG["moved"][2:])], n=214, original_type="text/rfc822-headers"),
        expect("bounce", _lab(a, "moved")),
    )
    noaction = Rcpt(b, "5.1.1", "smtp; 550 5.1.1 No such user", action="")
    write(
        "rfc3464", "no_action_field", dsn([noaction], n=215), expect("bounce", _lab(b, "unknown"))
    )
    german = "Dies ist das Mailsystem auf mx.example.de.\n\nIhre Nachricht konnte leider nicht zugestellt werden. Grüße\n"
    write(
        "rfc3464",
        "human_iso8859_1_8bit",
        dsn(
            [Rcpt(a, *DIAG["full"][2:])],
            n=216,
            human=german,
            human_charset="iso-8859-1",
            human_cte="8bit",
            subject="Unzustellbar: Ihre Nachricht",
        ).encode("iso-8859-1"),
        expect("bounce", _lab(a, "full")),
    )
    japanese = "メッセージを配信できませんでした。\n宛先のメールアドレスが見つかりません。\n"
    write(
        "rfc3464",
        "human_iso2022jp_base64",
        dsn(
            [Rcpt(b, *DIAG["unknown"][2:])],
            n=217,
            human=japanese,
            human_charset="iso-2022-jp",
            human_cte="base64",
            subject=Header("配信不能: Your March newsletter", "iso-2022-jp").encode(),
        ),
        expect("bounce", _lab(b, "unknown")),
    )
    french = "Votre message n'a pas pu être remis à ces destinataires — désolé.\n"
    write(
        "rfc3464",
        "human_windows1252_qp",
        dsn(
            [Rcpt(c, *DIAG["disabled"][2:])],
            n=218,
            human=french,
            human_charset="windows-1252",
            human_cte="quoted-printable",
            subject="Non remis : Your March newsletter",
        ),
        expect("bounce", _lab(c, "disabled")),
    )
    html = f'<html><body><p>Delivery has failed to these recipients or groups:</p><p><a href="mailto:{a}">{a}</a> &lt;{a}&gt;</p></body></html>'
    text = dsn([Rcpt(a, *DIAG["o365"][2:])], n=219, **STYLES["office365"]).replace(
        "Content-Type: text/plain; charset=us-ascii", "Content-Type: text/html; charset=us-ascii", 1
    )
    text = text.replace(STYLES["office365"]["human"], html + "\n")
    write("rfc3464", "office365_html_human_part", text, expect("bounce", _lab(a, "o365")))


def notices() -> None:
    a, b = "dee@example.org", "eli@example.net"
    delayed = [
        (
            "postfix_delayed",
            {"subject": "Delayed Mail (still being retried)"},
            "4.4.1",
            "X-Postfix; connect to mx.example.org[198.51.100.2]:25: Connection timed out",
        ),
        (
            "sendmail_warning",
            {**STYLES["sendmail"], "subject": "Warning: could not send message for past 4 hours"},
            "4.4.7",
            "smtp; 451 4.4.7 Deferred: Connection refused by mx.example.org.",
        ),
        (
            "exim_delayed",
            {**STYLES["exim"], "subject": "Warning: message 1abcde-000123-AB delayed 24 hours"},
            "4.0.0",
            "smtp; 451 4.7.1 Greylisted, please retry later",
        ),
        (
            "gmail_delay",
            {**STYLES["gmail"], "subject": "Delivery Status Notification (Delay)"},
            "4.2.2",
            "smtp; 452 4.2.2 The email account that you tried to reach is over quota.",
        ),
    ]
    for i, (name, style, status, diag) in enumerate(delayed):
        text = dsn([Rcpt(a, status, diag, action="delayed")], n=300 + i, **style)
        write("notices", name, text, expect("delayed", (a, "delayed", "delayed", False, status)))
    delivered = [
        ("delivered", "delivered", "2.0.0"),
        ("relayed", "relayed", "2.0.0"),
        ("expanded", "expanded", "2.0.0"),
    ]
    for i, (name, action, status) in enumerate(delivered):
        text = dsn(
            [Rcpt(b, status, "smtp; 250 2.0.0 OK queued as 7F2A1C", action=action)],
            n=310 + i,
            subject="Successful Mail Delivery Report",
        )
        write(
            "notices",
            f"dsn_{name}",
            text,
            expect("delivered", (b, "delivered", "delivered", False, status)),
        )
    mixed = [
        Rcpt(a, "2.0.0", "smtp; 250 2.0.0 Ok", action="delivered"),
        Rcpt(b, "4.4.1", "smtp; 421 4.4.1 Connection timed out", action="delayed"),
    ]
    write(
        "notices",
        "mixed_delivered_delayed",
        dsn(mixed, n=320, subject="Delivery Status Notification"),
        expect(
            "delayed",
            (a, "delivered", "delivered", False, "2.0.0"),
            (b, "delayed", "delayed", False, "4.4.1"),
        ),
    )
    qp = dsn(
        [Rcpt(a, "4.4.1", "smtp; 421 4.4.1 Connection timed out", action="delayed")],
        n=321,
        status_cte="quoted-printable",
        subject="Delayed Mail (still being retried)",
    )
    write(
        "notices",
        "delayed_qp_crlf",
        qp,
        expect("delayed", (a, "delayed", "delayed", False, "4.4.1")),
        crlf=True,
    )


def main() -> None:
    rfc3464()
    notices()


if __name__ == "__main__":
    main()
