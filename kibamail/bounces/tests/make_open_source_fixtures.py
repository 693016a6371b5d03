# ruff: noqa: E501, RUF001  (fixture texts read best as the MTAs print them, one line each; Russian text is Russian)
"""Generate the open-source MTA fixture families (``python -m kibamail.bounces.tests.make_open_source_fixtures``).

Each report is written from the MTA's documented or source-code wording (qmail-send,
Exim's deliver.c, Sendmail's savemail.c, Postfix's bounce templates, OpenSMTPD's
bounce.c, ...) with invented hosts and people. Labels follow the issue's rule: only
user unknown, host unknown, moved and null MX with a 5xx code suppress.
"""

from __future__ import annotations

from .fixture_kit import DATE, encode, expect, original, return_path, write

B, D, DL = "bounce", "delayed", "delivered"


def plain(
    sender: str,
    subject: str,
    body: str,
    *,
    n: int,
    first: str,
    headers: str = "",
    charset: str = "us-ascii",
    cte: str = "7bit",
) -> str:
    """A single-part report as qmail, Exim, V5 Sendmail and friends send them."""
    to = return_path(f"msg-{n:04d}@shop.example.com", first)
    return (
        f"Return-Path: <>\nFrom: {sender}\nTo: {to}\nSubject: {subject}\nDate: {DATE}\n"
        f"Message-ID: <report-{n:04d}@mx.example.org>\n{headers}MIME-Version: 1.0\n"
        f"Content-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: {cte}\n\n"
        + (encode(body, cte, charset) if cte != "7bit" else _seven_bit(body, charset))
    )


def _seven_bit(body: str, charset: str) -> str:
    """ISO-2022-JP is 7-bit: its escape sequences are written as they are."""
    if charset.lower() == "iso-2022-jp":
        return body.encode(charset).decode("ascii")
    return body


def r(
    address: str, reason: str, suppress: bool, status: str = "", kind: str = B
) -> tuple[str, str, str, bool, str]:
    return (address, kind, reason, suppress, status)


# ---------------------------------------------------------------- qmail
QMAIL_FROM = "MAILER-DAEMON@mail.example.org"
QMAIL_HEAD = "Received: (qmail 4711 invoked for bounce); 2 Mar 2026 10:15:00 -0000\n"
QMAIL_INTRO = (
    "Hi. This is the qmail-send program at mail.example.org.\n"
    "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
    "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
)


def qmail_body(blocks: str, first: str, n: int, intro: str = QMAIL_INTRO) -> str:
    return (
        intro
        + blocks
        + "\n--- Below this line is a copy of the message.\n\n"
        + original(first, n=n)
    )


def qmail(
    name: str,
    n: int,
    blocks: str,
    label: dict[str, object],
    first: str,
    *,
    intro: str = QMAIL_INTRO,
    crlf: bool = False,
    charset: str = "us-ascii",
    cte: str = "7bit",
) -> None:
    body = qmail_body(blocks, first, n, intro)
    text = plain(
        QMAIL_FROM,
        "failure notice",
        body,
        n=n,
        first=first,
        headers=QMAIL_HEAD,
        charset=charset,
        cte=cte,
    )
    write("qmail", name, text, label, crlf=crlf)


def make_qmail() -> None:
    a = "amy@example.net"
    qmail(
        "user_unknown_remote",
        501,
        f"<{a}>:\n192.0.2.25 does not like recipient.\nRemote host said: 550 5.1.1 <{a}>: Recipient address rejected: User unknown in virtual mailbox table\nGiving up on 192.0.2.25.\n",
        expect(B, r(a, "user_unknown", True, "5.1.1")),
        a,
    )
    b = "bob@example.org"
    qmail(
        "vpopmail_no_mailbox",
        502,
        f"<{b}>:\nSorry, no mailbox here by that name. vpopmail (#5.1.1)\n",
        expect(B, r(b, "user_unknown", True, "5.1.1")),
        b,
    )
    c = "cy@nosuchdomain.example"
    qmail(
        "host_not_found",
        503,
        f"<{c}>:\nSorry, I couldn't find any host named nosuchdomain.example. (#5.1.2)\n",
        expect(B, r(c, "host_unknown", True, "5.1.2")),
        c,
    )
    d = "dot@example.com"
    qmail(
        "expired_queue_too_long",
        504,
        f"<{d}>:\nSorry, I wasn't able to establish an SMTP connection. (#4.4.1)\nI'm not going to try again; this message has been in the queue too long.\n",
        expect(B, r(d, "expired", False)),
        d,
    )
    e, f = "eve@example.net", "fay@example.net"
    qmail(
        "two_recipients_full_and_unknown",
        505,
        f"<{e}>:\n192.0.2.30 failed after I sent the message.\nRemote host said: 552 5.2.2 <{e}>: Mailbox full, quota exceeded\n\n<{f}>:\n192.0.2.30 does not like recipient.\nRemote host said: 550 5.1.1 <{f}>: No such user\nGiving up on 192.0.2.30.\n",
        expect(B, r(e, "mailbox_full", False, "5.2.2"), r(f, "user_unknown", True, "5.1.1")),
        e,
    )
    g = "gus@example.com"
    qmail(
        "blocked_blocklist",
        506,
        f"<{g}>:\n192.0.2.40 does not like recipient.\nRemote host said: 554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org\nGiving up on 192.0.2.40.\n",
        expect(B, r(g, "blocked", False, "5.7.1")),
        g,
    )
    h = "hal@example.org"
    qmail(
        "sender_rejected",
        507,
        f"<{h}>:\nConnected to 192.0.2.41 but sender was rejected.\nRemote host said: 553 5.1.8 <news@shop.example.com>... Domain of sender address does not exist\n",
        expect(B, r(h, "sender_rejected", False, "5.1.8")),
        h,
    )
    i = "ivy@example.net"
    qmail(
        "too_big",
        508,
        f"<{i}>:\n192.0.2.42 failed on DATA command.\nRemote host said: 552 5.3.4 Message size exceeds fixed maximum message size\n",
        expect(B, r(i, "message_too_big", False, "5.3.4")),
        i,
    )
    j = "jo@example.es"
    qmail(
        "clone_spanish_crlf",
        509,
        f"<{j}>:\nEl usuario no existe.\nRemote host said: 550 5.1.1 <{j}>: User unknown\n",
        expect(B, r(j, "user_unknown", True, "5.1.1")),
        j,
        intro="Su mensaje no pudo ser entregado a las siguientes direcciones.\n\n",
        crlf=True,
    )
    k = "karl@example.de"
    qmail(
        "latin1_base64",
        510,
        f"<{k}>:\n192.0.2.43 does not like recipient.\nRemote host said: 550 5.1.1 <{k}>: Empfänger unbekannt / user unknown\nGiving up on 192.0.2.43.\n",
        expect(B, r(k, "user_unknown", True, "5.1.1")),
        k,
        charset="iso-8859-1",
        cte="base64",
    )
    m = "mia@example.net"
    quoted = "".join(
        "> " + line + "\n"
        for line in qmail_body(
            f"<{m}>:\n192.0.2.44 does not like recipient.\nRemote host said: 550 5.1.1 <{m}>: Recipient address rejected: User unknown\nGiving up on 192.0.2.44.\n",
            m,
            511,
        ).splitlines()[:12]
    )
    write(
        "qmail",
        "quoted_in_forward",
        plain(QMAIL_FROM, "failure notice", quoted, n=511, first=m, headers=QMAIL_HEAD),
        expect(B, r(m, "user_unknown", True, "5.1.1")),
    )


# ---------------------------------------------------------------- Exim and clones
EXIM_FROM = "Mail Delivery System <Mailer-Daemon@mail.example.net>"
EXIM_OPEN = "This message was created automatically by mail delivery software.\n\n"
EXIM_FAILED = "A message that you sent could not be delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) failed:\n\n"
EXIM_COPY = "\n------ This is a copy of the message, including all the headers. ------\n\n"


def exim(
    name: str,
    n: int,
    entries: str,
    label: dict[str, object],
    first: str,
    *,
    headers: str = "",
    family: str = "exim",
    sender: str = EXIM_FROM,
    subject: str = "Mail delivery failed: returning message to sender",
    preface: str = "",
    charset: str = "us-ascii",
    cte: str = "7bit",
    copy: str = EXIM_COPY,
) -> None:
    xfr = f"X-Failed-Recipients: {first}\n"
    body = preface + EXIM_OPEN + EXIM_FAILED + entries + copy + original(first, n=n)
    write(
        family,
        name,
        plain(
            sender, subject, body, n=n, first=first, headers=headers + xfr, charset=charset, cte=cte
        ),
        label,
    )


def make_exim() -> None:
    a = "ann@example.org"
    exim(
        "user_unknown_rcpt",
        601,
        f"  {a}\n    host mx.example.org [192.0.2.50]\n    SMTP error from remote mail server after RCPT TO:<{a}>:\n    550 5.1.1 <{a}>: Recipient address rejected: User unknown in local recipient table\n",
        expect(B, r(a, "user_unknown", True, "5.1.1")),
        a,
    )
    b = "ben@example.com"
    exim(
        "retry_timeout_exceeded",
        602,
        f"  {b}\n    retry timeout exceeded\n",
        expect(B, r(b, "expired", False)),
        b,
    )
    c = "cat@example.com"
    exim(
        "retry_time_not_reached",
        603,
        f"  {c}\n    retry time not reached for any host after a long failure period\n",
        expect(B, r(c, "expired", False)),
        c,
    )
    d = "dan@unroutable.example"
    exim(
        "unrouteable_address",
        604,
        f"  {d}\n    Unrouteable address\n",
        expect(B, r(d, "host_unknown", True)),
        d,
    )
    e = "eli@example.net"
    exim(
        "mailbox_full_local",
        605,
        f"  save to inbox\n    generated by {e}\n    mailbox is full: retry timeout exceeded\n",
        expect(B, r(e, "mailbox_full", False)),
        e,
    )
    f, g, h = "flo@example.org", "gil@example.org", "hana@example.org"
    exim(
        "three_recipients",
        606,
        f"  {f}\n    host mx.example.org [192.0.2.51]\n    SMTP error from remote mail server after RCPT TO:<{f}>:\n    550 5.1.1 <{f}>: User unknown\n  {g}\n    host mx.example.org [192.0.2.51]\n    SMTP error from remote mail server after end of data:\n    552 5.2.2 <{g}>: Mailbox full, over quota\n  {h}\n    host mx.example.org [192.0.2.51]\n    SMTP error from remote mail server after RCPT TO:<{h}>:\n    554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using bl.spamcop.net\n",
        expect(
            B,
            r(f, "user_unknown", True, "5.1.1"),
            r(g, "mailbox_full", False, "5.2.2"),
            r(h, "blocked", False, "5.7.1"),
        ),
        f,
    )
    i = "ida@example.com"
    old = f"  {i}\n\nThe following text was generated during the delivery attempt:\n\n------ {i} ------\n\nSMTP error from remote mail server after RCPT TO:<{i}>:\n    host mx.example.com [192.0.2.52]: 554 5.7.1 <{i}>: Relay access denied\n"
    exim("old_style_relay_denied", 607, old, expect(B, r(i, "no_relaying", False, "5.7.1")), i)
    j = "jan@example.net"
    write(
        "exim",
        "delay_warning_greylisted",
        plain(
            EXIM_FROM,
            "Warning: message 1rAbCd-000607-Xy delayed 24 hours",
            EXIM_OPEN
            + "A message that you sent has not yet been delivered to one or more of its\nrecipients after more than 24 hours on the queue on mail.example.net.\n\nThe message identifier is:     1rAbCd-000607-Xy\nThe subject of the message is: Your March newsletter\nThe date of the message is:    "
            + DATE
            + "\n\nThe address to which the message has not yet been delivered is:\n\n  "
            + j
            + "\n    Delay reason: SMTP error from remote mail server after RCPT TO:<"
            + j
            + ">:\n    host mx.example.net [192.0.2.53]: 451 4.7.1 Greylisted, please try again later\n\nNo action is required on your part. Delivery attempts will continue for\nsome time, and this warning may be repeated at intervals if the message\nremains undelivered. Eventually the mail delivery software will give up,\nand when that happens, the message will be returned to you.\n",
            n=608,
            first=j,
        ),
        expect(D, r(j, "delayed", False, "4.7.1", kind=D)),
    )
    k = "kim@example.org"
    exim(
        "sender_rejected_mail_from",
        609,
        f"  {k}\n    host mx.example.org [192.0.2.54]\n    SMTP error from remote mail server after MAIL FROM:<bounces@bounces.shop.example.com> SIZE=2048:\n    553 5.7.1 <bounces@bounces.shop.example.com>: Sender address rejected: not owned by user\n",
        expect(B, r(k, "sender_rejected", False, "5.7.1")),
        k,
    )
    m = "max@nullmx.example"
    exim(
        "null_mx",
        610,
        f"  {m}\n    an MX or SRV record indicated no SMTP service\n",
        expect(B, r(m, "null_mx", True)),
        m,
    )
    o = "ola@example.com"
    exim(
        "dmarc_rejected",
        611,
        f"  {o}\n    host mx.example.com [192.0.2.55]\n    SMTP error from remote mail server after end of data:\n    550 5.7.26 Unauthenticated email from shop.example.com is not accepted due to domain's DMARC policy\n",
        expect(B, r(o, "auth_failure", False, "5.7.26")),
        o,
    )
    p = "pia@example.de"
    german = (
        "Diese Nachricht wurde automatisch erzeugt. Die Zustellung an folgende Empfänger ist fehlgeschlagen:\n\n  "
        + p
        + "\n    host mx.example.de [192.0.2.56]\n    SMTP error from remote mail server after RCPT TO:<"
        + p
        + ">:\n    550 5.1.1 <"
        + p
        + ">: Benutzer unbekannt\n"
    )
    write(
        "exim",
        "german_cp1252_qp_failed_header",
        plain(
            EXIM_FROM,
            "Unzustellbar: Ihre Nachricht",
            german + EXIM_COPY + original(p, n=612),
            n=612,
            first=p,
            headers=f"X-Failed-Recipients: {p}\n",
            charset="windows-1252",
            cte="quoted-printable",
        ),
        expect(B, r(p, "user_unknown", True, "5.1.1")),
    )
    q = "quin@example.ru"
    russian = "Это письмо создано автоматически\nсервером Mail.Ru, отвечать на него не\nнужно.\n\nК сожалению, Ваше письмо не может\nбыть доставлено одному или нескольким\nполучателям:\n\n**********************\n\n"
    exim(
        "mailru_spam",
        613,
        f"  {q}\n    SMTP error from remote mail server after end of data:\n    host mx.example.ru [192.0.2.57]: 550 5.7.1 Message rejected as spam by content filter\n",
        expect(B, r(q, "spam_detected", False, "5.7.1")),
        q,
        sender="Mail Delivery System <mailer-daemon@corp.mail.ru>",
        preface=russian,
        charset="utf-8",
        cte="base64",
    )
    s = "sam@example.com"
    write(
        "exim",
        "mxlogic_user_unknown",
        plain(
            "Mail Delivery System <MAILER-DAEMON@mxlogic.example.net>",
            "Mail delivery failed: returning message to sender",
            EXIM_OPEN
            + "A message that you have sent could not be delivered to one or more\nrecipients.  This is a permanent error.  The following address failed:\n\n  <"
            + s
            + ">: 550 5.1.1 <"
            + s
            + ">... User unknown\n\nIncluded is a copy of the message header:\n-----------------------------------------\n"
            + original(s, n=614, headers_only=True),
            n=614,
            first=s,
            headers="X-MX-Bounce: mta/src/queue/bounce\nX-MXL-Hash: 4c9d4d411993da17-bbd4212b6c887f6c23bab7db4bd87ef5edc00758\n",
        ),
        expect(B, r(s, "user_unknown", True, "5.1.1")),
    )


def main() -> None:
    from .make_open_source_fixtures_gateways import make_appliances_and_unknown
    from .make_open_source_fixtures_more import (
        make_domino_and_more,
        make_gmx_smail,
        make_opensmtpd_courier,
    )
    from .make_open_source_fixtures_mta import make_postfix, make_sendmail

    make_qmail()
    make_exim()
    make_gmx_smail()
    make_sendmail()
    make_postfix()
    make_opensmtpd_courier()
    make_domino_and_more()
    make_appliances_and_unknown()


if __name__ == "__main__":
    main()
