# ruff: noqa: E501, RUF001  (fixture texts read best as the MTAs print them, one line each; Russian text is Russian)
"""Generate the open-source MTA fixture families (``python -m kibamail.bounces.tests.make_open_source_fixtures``).

Each report is written from the MTA's documented or source-code wording (qmail-send,
Exim's deliver.c, Sendmail's savemail.c, Postfix's bounce templates, OpenSMTPD's
bounce.c, ...) with invented hosts and people. Labels follow the issue's rule: only
user unknown, host unknown, moved and null MX with a 5xx code suppress.
"""

from __future__ import annotations

from .fixture_kit import DATE, Rcpt, dsn, encode, expect, original, return_path, write

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


# ---------------------------------------------------------------- GMX / web.de / 1&1, Smail
def make_gmx_smail() -> None:
    a = "anja@example.net"
    body = (
        EXIM_OPEN
        + 'A message that you sent could not be delivered to one or more of\nits recipients. This is a permanent error. The following address\nfailed:\n\n"'
        + a
        + '":\nSMTP error from remote server after RCPT command:\nhost: mx.example.net\n5.1.1 <'
        + a
        + ">... User Unknown\n\n--- The header of the original message is following. ---\n\n"
        + original(a, n=701, headers_only=True)
    )
    write(
        "gmx",
        "gmx_user_unknown",
        plain(
            "Mail Delivery System <mailer-daemon@gmx.net>",
            "Mail delivery failed: returning message to sender",
            body,
            n=701,
            first=a,
            headers="X-GMX-Antispam: 0 (Mail was not recognized as spam); Detail=V3;\nX-UI-Out-Filterresults: notjunk:1;\n",
        ),
        expect(B, r(a, "user_unknown", True, "5.1.1")),
    )
    b = "bernd@example.de"
    body = (
        EXIM_OPEN
        + "A message that you sent could not be delivered to one or more of\nits recipients. This is a permanent error. The following address\nfailed:\n\n<"
        + b
        + ">\n\nReason:\ndelivery retry timeout exceeded\n\n--- The header of the original message is following. ---\n\n"
        + original(b, n=702, headers_only=True)
    )
    write(
        "gmx",
        "webde_retry_timeout",
        plain(
            "Mail Delivery System <mailer-daemon@web.de>",
            "Mail delivery failed: returning message to sender",
            body,
            n=702,
            first=b,
            headers="X-UI-Out-Filterresults: notjunk:1;\n",
        ),
        expect(B, r(b, "expired", False)),
    )
    c = "clara@example.eu"
    body = (
        EXIM_OPEN
        + "A message that you sent could not be delivered to one or more of\nits recipients. This is a permanent error. The following address\nfailed:\n\n"
        + c
        + "\n\nFor the following reason:\n\nMail size limit exceeded. For explanation visit\nhttp://postmaster.1and1.example/en/error-messages?ip=192.0.2.10\n\n--- The header of the original message is following. ---\n\n"
        + original(c, n=703, headers_only=True)
    )
    write(
        "gmx",
        "oneandone_size_limit",
        plain(
            '"Mail Delivery System" <mailer-daemon@kundenserver.de>',
            "Mail delivery failed: returning message to sender",
            body,
            n=703,
            first=c,
        ),
        expect(B, r(c, "message_too_big", False)),
    )
    d = "dirk@example.de"
    body = (
        "|------------------------- Failed addresses follow: ---------------------|\n <"
        + d
        + "> ... unknown user / Teilnehmer existiert nicht\n|------------------------- Message text follows: ------------------------|\n"
        + original(d, n=704)
    )
    write(
        "smail",
        "tonline_unknown_user",
        plain(
            "Mail Delivery System <MAILER-DAEMON@mailout.example.de>",
            "Mail delivery failed: returning message to sender",
            body,
            n=704,
            first=d,
        ),
        expect(B, r(d, "user_unknown", True)),
    )
    e = "edith@example.de"
    body = (
        "|------------------------- Failed addresses follow: ---------------------|\n <"
        + e
        + ">\n   552 5.2.2 <599002574263-0001> Quota exceeded (mailbox for user is full)\n|------------------------- Message header follows: ----------------------|\n"
        + original(e, n=705, headers_only=True)
    )
    write(
        "smail",
        "tonline_quota",
        plain(
            "Mail Delivery System <MAILER-DAEMON@mailout.example.de>",
            "Mail delivery failed: returning message to sender",
            body,
            n=705,
            first=e,
        ),
        expect(B, r(e, "mailbox_full", False, "5.2.2")),
    )


# ---------------------------------------------------------------- Sendmail
SM_FROM = "Mail Delivery Subsystem <MAILER-DAEMON@relay.example.org>"
SM_INTRO = (
    f"The original message was received at {DATE}\nfrom mta1.shop.example.com [192.0.2.10]\n\n"
)


def sendmail(
    name: str,
    n: int,
    human: str,
    rcpts: list[Rcpt],
    label: dict[str, object],
    *,
    subject: str = "Returned mail: see transcript for details",
    charset: str = "us-ascii",
    cte: str = "7bit",
    headers: str = "",
) -> None:
    text = dsn(
        rcpts,
        n=n,
        sender=SM_FROM,
        subject=subject,
        human=human,
        reporting_mta="dns; relay.example.org",
        human_charset=charset,
        human_cte=cte,
        extra_headers=headers,
    )
    write("sendmail", name, text, label)


def make_sendmail() -> None:
    a = "al@example.org"
    sendmail(
        "user_unknown_dsn",
        801,
        SM_INTRO
        + f"   ----- The following addresses had permanent fatal errors -----\n<{a}>\n    (reason: 550 5.1.1 <{a}>... User unknown)\n\n   ----- Transcript of session follows -----\n... while talking to mx.example.org.:\n>>> DATA\n<<< 550 5.1.1 <{a}>... User unknown\n550 5.1.1 <{a}>... User unknown\n<<< 503 5.0.0 Need RCPT (recipient)\n",
        [Rcpt(a, "5.1.1", "SMTP; 550 5.1.1 <{a}>... User unknown")],
        expect(B, r(a, "user_unknown", True, "5.1.1")),
    )
    b = "bea@nosuchhost.example"
    sendmail(
        "host_unknown_dsn",
        802,
        SM_INTRO
        + f"   ----- The following addresses had permanent fatal errors -----\n<{b}>\n    (reason: 550 Host unknown)\n\n   ----- Transcript of session follows -----\n550 5.1.2 <{b}>... Host unknown (Name server: nosuchhost.example: host not found)\n",
        [Rcpt(b, "5.1.2", "", remote="")],
        expect(B, r(b, "host_unknown", True, "5.1.2")),
    )
    c = "cal@example.com"
    sendmail(
        "expired_after_5_days",
        803,
        SM_INTRO
        + f"   ----- Transcript of session follows -----\n<{c}>... Deferred: Connection timed out with mx.example.com.\nMessage could not be delivered for 5 days\nMessage will be deleted from queue\n",
        [Rcpt(c, "4.4.7", "", remote="")],
        expect(B, r(c, "expired", False)),
        subject="Returned mail: Cannot send message for 5 days",
    )
    d = "dee@example.net"
    warn = (
        "    **********************************************\n    **      THIS IS A WARNING MESSAGE ONLY      **\n    **  YOU DO NOT NEED TO RESEND YOUR MESSAGE  **\n    **********************************************\n\n"
        + SM_INTRO
        + f"   ----- The following addresses had transient non-fatal errors -----\n<{d}>\n\n   ----- Transcript of session follows -----\n<{d}>... Deferred: Connection refused by mx.example.net.\nWarning: message still undelivered after 4 hours\nWill keep trying until message is 5 days old\n"
    )
    sendmail(
        "warning_4_hours",
        804,
        warn,
        [Rcpt(d, "4.4.1", "", action="delayed", remote="")],
        expect(D, r(d, "delayed", False, "4.4.1", kind=D)),
        subject="Warning: could not send message for past 4 hours",
    )
    e = "ed@example.org"
    body = (
        f"   ----- Transcript of session follows -----\nWhile talking to smtp.example.org:\n>>> RCPT To:<{e}>\n<<< 550 <{e}>... User unknown\n550 <{e}>... User unknown\n\n   ----- Unsent message follows -----\n"
        + original(e, n=805)
    )
    write(
        "sendmail",
        "v5_user_unknown",
        plain(SM_FROM, "Returned mail: User unknown", body, n=805, first=e),
        expect(B, r(e, "user_unknown", True)),
    )
    f, g = "fin@example.net", "gwen@example.net"
    sendmail(
        "two_recipients_unknown_and_full",
        806,
        SM_INTRO
        + f"   ----- The following addresses had permanent fatal errors -----\n<{f}>\n    (reason: 550 5.1.1 <{f}>... No such user)\n<{g}>\n    (reason: 552 5.2.2 <{g}>... Mailbox full)\n\n   ----- Transcript of session follows -----\n... while talking to mx.example.net.:\n>>> RCPT To:<{f}>\n<<< 550 5.1.1 <{f}>... No such user\n550 5.1.1 <{f}>... User unknown\n>>> RCPT To:<{g}>\n<<< 552 5.2.2 <{g}>... Mailbox full\n552 5.2.2 <{g}>... Mailbox full\n",
        [
            Rcpt(f, "5.1.1", "SMTP; 550 5.1.1 <{a}>... No such user"),
            Rcpt(g, "5.2.2", "SMTP; 552 5.2.2 <{a}>... Mailbox full"),
        ],
        expect(B, r(f, "user_unknown", True, "5.1.1"), r(g, "mailbox_full", False, "5.2.2")),
    )
    h = "hugo@example.com"
    sendmail(
        "relaying_denied",
        807,
        SM_INTRO
        + f"   ----- Transcript of session follows -----\n... while talking to mx.example.com.:\n>>> RCPT To:<{h}>\n<<< 550 5.7.1 <{h}>... Relaying denied\n550 5.7.1 <{h}>... Relaying denied\n",
        [Rcpt(h, "5.7.1", "SMTP; 550 5.7.1 <{a}>... Relaying denied")],
        expect(B, r(h, "no_relaying", False, "5.7.1")),
    )
    i = "inga@example.org"
    sendmail(
        "spam_rejected_at_data",
        808,
        SM_INTRO
        + "   ----- Transcript of session follows -----\n... while talking to mx.example.org.:\n>>> DATA\n<<< 554 5.7.1 Message rejected as spam by Content Filtering\n554 5.0.0 Service unavailable\n",
        [Rcpt(i, "5.7.1", "SMTP; 554 5.7.1 Message rejected as spam by Content Filtering")],
        expect(B, r(i, "spam_detected", False, "5.7.1")),
    )
    j = "jun@example.jp"
    jp = (
        "以下のアドレスへの配送に失敗しました。\n\n"
        + SM_INTRO
        + f"   ----- Transcript of session follows -----\n... while talking to mx.example.jp.:\n>>> RCPT To:<{j}>\n<<< 550 5.1.1 <{j}>... User unknown\n550 5.1.1 <{j}>... User unknown\n"
    )
    sendmail(
        "iso2022jp_user_unknown",
        809,
        jp,
        [Rcpt(j, "5.1.1", "SMTP; 550 5.1.1 <{a}>... User unknown")],
        expect(B, r(j, "user_unknown", True, "5.1.1")),
        charset="iso-2022-jp",
        cte="base64",
    )
    k = "kai@example.org"
    body = (
        f"  ----- The following addresses had permanent fatal errors -----\n\n>>> {k} <{k}>\n\n  ----- Transcript of session follows -----\n550 sorry, no mailbox here by that name (#5.1.1 - chkusr)\n\nContent-type: message/rfc822\n\n"
        + original(k, n=810)
    )
    write(
        "sendmail",
        "activehunter_no_mailbox",
        plain(
            '"MAILER-DAEMON" <postmaster@example.org>',
            "FAILURE NOTICE :",
            body,
            n=810,
            first=k,
            headers="X-AHMailID: 0000000001\n",
        ),
        expect(B, r(k, "user_unknown", True, "5.1.1")),
    )
    m = "mona@example.net"
    sendmail(
        "blocked_rbl",
        811,
        SM_INTRO
        + "   ----- Transcript of session follows -----\n... while talking to mx.example.net.:\n>>> MAIL From:<bounces@bounces.shop.example.com> SIZE=2048\n<<< 550 5.7.1 Mail from 192.0.2.10 refused - see http://www.spamhaus.org/query/bl?ip=192.0.2.10\n554 5.0.0 Service unavailable\n",
        [
            Rcpt(
                m,
                "5.7.1",
                "SMTP; 550 5.7.1 Mail from 192.0.2.10 refused - see http://www.spamhaus.org/query/bl?ip=192.0.2.10",
            )
        ],
        expect(B, r(m, "blocked", False, "5.7.1")),
    )


# ---------------------------------------------------------------- Postfix
PF_FROM = "MAILER-DAEMON@mail.example.org (Mail Delivery System)"
PF_INTRO = "This is the mail system at host mail.example.org.\n\nI'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients. It's attached below.\n\nFor further assistance, please send mail to postmaster.\n\nIf you do so, please include this problem report. You can\ndelete your own text from the attached returned message.\n\n                   The mail system\n\n"
PF_WARN = "This is the mail system at host mail.example.org.\n\n####################################################################\n# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n####################################################################\n\nYour message could not be delivered for more than 4 hour(s).\nIt will be retried until it is 5 day(s) old.\n\nFor further assistance, please send mail to postmaster.\n\n                   The mail system\n\n"


def postfix_plain(
    name: str,
    n: int,
    entries: str,
    label: dict[str, object],
    first: str,
    *,
    intro: str = PF_INTRO,
    subject: str = "Undelivered Mail Returned to Sender",
    crlf: bool = False,
    cte: str = "7bit",
) -> None:
    body = (
        intro
        + entries
        + "\n--- Original message follows. ---\n"
        + original(first, n=n, headers_only=True)
    )
    write(
        "postfix", name, plain(PF_FROM, subject, body, n=n, first=first, cte=cte), label, crlf=crlf
    )


def postfix_dsn(
    name: str,
    n: int,
    entries: str,
    rcpts: list[Rcpt],
    label: dict[str, object],
    *,
    intro: str = PF_INTRO,
    subject: str = "Undelivered Mail Returned to Sender",
) -> None:
    write(
        "postfix",
        name,
        dsn(
            rcpts,
            n=n,
            sender=PF_FROM,
            subject=subject,
            human=intro + entries,
            reporting_mta="dns; mail.example.org",
        ),
        label,
    )


def make_postfix() -> None:
    a = "abe@example.net"
    postfix_plain(
        "user_unknown_plain",
        901,
        f"<{a}>: host mx.example.net[192.0.2.60] said: 550 5.1.1\n    <{a}>: Recipient address rejected: User unknown in virtual mailbox\n    table (in reply to RCPT TO command)\n",
        expect(B, r(a, "user_unknown", True, "5.1.1")),
        a,
    )
    b = "bo@nosuchdomain.example"
    postfix_dsn(
        "host_not_found",
        902,
        f"<{b}>: Host or domain name not found. Name service error for\n    name=nosuchdomain.example type=A: Host not found\n",
        [
            Rcpt(
                b,
                "5.4.4",
                "X-Postfix; Host or domain name not found. Name service error for name=nosuchdomain.example type=A: Host not found",
                remote="",
            )
        ],
        expect(B, r(b, "host_unknown", True, "5.4.4")),
    )
    c = "cora@example.net"
    postfix_dsn(
        "loops_back_to_myself",
        903,
        f"<{c}>: mail for example.net loops back to myself\n",
        [Rcpt(c, "5.4.6", "X-Postfix; mail for example.net loops back to myself", remote="")],
        expect(B, r(c, "network_error", False, "5.4.6")),
    )
    d = "dora@example.com"
    postfix_plain(
        "delayed_warning_plain",
        904,
        f"<{d}>: delivery temporarily suspended: connect to\n    mx.example.com[192.0.2.61]:25: Connection timed out\n",
        expect(D, r(d, "delayed", False, kind=D)),
        d,
        intro=PF_WARN,
        subject="Delayed Mail (still being retried)",
    )
    e = "emil@example.com"
    postfix_dsn(
        "expired_connection_timed_out",
        905,
        f"<{e}>: delivery temporarily suspended: connect to\n    mx.example.com[192.0.2.62]:25: Connection timed out\n",
        [
            Rcpt(
                e,
                "4.4.1",
                "X-Postfix; delivery temporarily suspended: connect to mx.example.com[192.0.2.62]:25: Connection timed out",
                remote="",
            )
        ],
        expect(B, r(e, "expired", False)),
    )
    f = "finn@example.org"
    postfix_dsn(
        "mailbox_full_local",
        906,
        f"<{f}>: cannot update mailbox /var/mail/finn for user finn.\n    error writing message: Disk quota exceeded\n",
        [
            Rcpt(
                f,
                "5.2.2",
                "X-Postfix; cannot update mailbox /var/mail/finn for user finn. error writing message: Disk quota exceeded",
                remote="",
            )
        ],
        expect(B, r(f, "mailbox_full", False, "5.2.2")),
    )
    g, h, i = "gina@example.net", "hank@example.net", "iris@example.net"
    postfix_plain(
        "three_recipients",
        907,
        f"<{g}>: host mx.example.net[192.0.2.63] said: 550 5.1.1 <{g}>:\n    Recipient address rejected: User unknown (in reply to RCPT TO command)\n\n<{h}>: host mx.example.net[192.0.2.63] said: 554 5.7.1 Message\n    rejected: spam content detected (in reply to end of DATA command)\n\n<{i}>: host mx.example.net[192.0.2.63] said: 552 5.3.4 Message size\n    exceeds fixed limit (in reply to end of DATA command)\n",
        expect(
            B,
            r(g, "user_unknown", True, "5.1.1"),
            r(h, "spam_detected", False, "5.7.1"),
            r(i, "message_too_big", False, "5.3.4"),
        ),
        g,
    )
    j = "jill@example.com"
    postfix_plain(
        "expanded_alias",
        908,
        f"<{j}> (expanded from <team@example.org>): host\n    mx.example.com[192.0.2.64] said: 550 5.1.1 <{j}>: Recipient address\n    rejected: User unknown in local recipient table (in reply to RCPT TO\n    command)\n",
        expect(B, r(j, "user_unknown", True, "5.1.1")),
        j,
    )
    k = "kurt@example.org"
    postfix_plain(
        "sender_rejected_mail_from",
        909,
        f"<{k}>: host mx.example.org[192.0.2.65] said: 553 5.7.1\n    <bounces@bounces.shop.example.com>: Sender address rejected: not logged\n    in (in reply to MAIL FROM command)\n",
        expect(B, r(k, "sender_rejected", False, "5.7.1")),
        k,
    )
    m = "mila@example.net"
    postfix_plain(
        "blocked_crlf_qp",
        910,
        f"<{m}>: host mx.example.net[192.0.2.66] refused to talk to me: 554 5.7.1\n    Service unavailable; Client host [192.0.2.10] blocked using\n    b.barracudacentral.org\n",
        expect(B, r(m, "blocked", False, "5.7.1")),
        m,
        crlf=True,
        cte="quoted-printable",
    )
    o = "otto@example.com"
    delivered = "This is the mail system at host mail.example.org.\n\nYour message was successfully delivered to the destination(s)\nlisted below. If the message was delivered to mailbox you will\nreceive no further notifications. Otherwise you may still receive\nnotifications of mail delivery errors from other systems.\n\n                   The mail system\n\n"
    postfix_dsn(
        "successful_delivery_notice",
        911,
        f"<{o}>: delivery via mx.example.com[192.0.2.67]:25: 250 2.0.0 Ok: queued\n    as 4QxABC\n",
        [
            Rcpt(
                o,
                "2.0.0",
                "smtp; 250 2.0.0 Ok: queued as 4QxABC",
                action="delivered",
                remote="mx.example.com",
            )
        ],
        expect(DL, r(o, "delivered", False, kind=DL)),
        intro=delivered,
        subject="Successful Mail Delivery Report",
    )


# ---------------------------------------------------------------- OpenSMTPD, Courier
OS_FROM = "Mailer Daemon <MAILER-DAEMON@smtpd.example.org>"
OS_HI = "Hi!\n\nThis is the MAILER-DAEMON, please DO NOT REPLY to this email.\n\n"
OS_COPY = "\nBelow is a copy of the original message:\n\n"


def make_opensmtpd_courier() -> None:
    a = "ada@example.net"
    write(
        "opensmtpd",
        "user_unknown",
        plain(
            OS_FROM,
            "Delivery status notification: error",
            OS_HI
            + "An error has occurred while attempting to deliver a message for\nthe following list of recipients:\n\n"
            + f"{a}: 550 5.1.1 <{a}>: Recipient address rejected: User unknown\n"
            + OS_COPY
            + original(a, n=1001),
            n=1001,
            first=a,
        ),
        expect(B, r(a, "user_unknown", True, "5.1.1")),
    )
    b = "bram@example.net"
    write(
        "opensmtpd",
        "delayed_network_error",
        plain(
            OS_FROM,
            "Delivery status notification: delay",
            OS_HI
            + "A message is delayed for more than 4 hours for the following\nlist of recipients:\n\n"
            + f"{b}: Network error on destination MXs\n\nPlease note that this is only a temporary failure report.\nThe message is kept in the queue for up to 4 days.\nYou DO NOT NEED to re-send the message to these recipients.\n"
            + OS_COPY
            + original(b, n=1002),
            n=1002,
            first=b,
        ),
        expect(D, r(b, "delayed", False, kind=D)),
    )
    c = "cleo@example.com"
    write(
        "opensmtpd",
        "envelope_expired",
        plain(
            OS_FROM,
            "Delivery status notification: error",
            OS_HI
            + "An error has occurred while attempting to deliver a message for\nthe following list of recipients:\n\n"
            + f"{c}: Envelope expired\n"
            + OS_COPY
            + original(c, n=1003),
            n=1003,
            first=c,
        ),
        expect(B, r(c, "expired", False)),
    )
    d, e = "dex@nosuchdomain.example", "elke@example.org"
    write(
        "opensmtpd",
        "domain_missing_and_full",
        plain(
            OS_FROM,
            "Delivery status notification: error",
            OS_HI
            + "An error has occurred while attempting to deliver a message for\nthe following list of recipients:\n\n"
            + f"{d}: Domain does not exist\n{e}: 552 5.2.2 <{e}>: Mailbox full\n"
            + OS_COPY
            + original(d, n=1004),
            n=1004,
            first=d,
        ),
        expect(B, r(d, "host_unknown", True), r(e, "mailbox_full", False, "5.2.2")),
    )

    cf = "Courier mail server at mail.example.org <@>"
    intro = (
        "This is a delivery status notification from mail.example.org,\nrunning the Courier mail server, version 1.1.\n\nThe original message was received on "
        + DATE
        + "\nfrom mta1.shop.example.com [192.0.2.10]\n\n"
        + "-" * 75
        + "\n\n"
    )
    f = "fritz@example.net"
    write(
        "courier",
        "user_unknown",
        dsn(
            [Rcpt(f, "5.1.1", "smtp; 550 5.1.1 <{a}>... User Unknown", remote="mx.example.net")],
            n=1101,
            sender=cf,
            subject="NOTICE: mail delivery status.",
            human=intro
            + f"                           UNDELIVERABLE MAIL\n\nYour message to the following recipients cannot be delivered:\n\n<{f}>:\n    mx.example.net [192.0.2.70]:\n>>> RCPT TO:<{f}>\n<<< 550 5.1.1 <{f}>... User Unknown\n\n"
            + "-" * 75
            + "\n",
            reporting_mta="dns; mail.example.org",
        ),
        expect(B, r(f, "user_unknown", True, "5.1.1")),
    )
    g = "greta@nosuchdomain.example"
    write(
        "courier",
        "no_such_domain",
        dsn(
            [Rcpt(g, "5.1.2", "", remote="")],
            n=1102,
            sender=cf,
            subject="NOTICE: mail delivery status.",
            human=intro
            + f"                           UNDELIVERABLE MAIL\n\nYour message to the following recipients cannot be delivered:\n\n<{g}>:\n    No such domain.\n\n"
            + "-" * 75
            + "\n",
            reporting_mta="dns; mail.example.org",
        ),
        expect(B, r(g, "host_unknown", True, "5.1.2")),
    )
    h = "hedy@example.com"
    write(
        "courier",
        "delayed",
        dsn(
            [
                Rcpt(
                    h,
                    "4.0.0",
                    "smtp; 421 4.3.2 Service shutting down, closing transmission channel",
                    action="delayed",
                    remote="mx.example.com",
                )
            ],
            n=1103,
            sender=cf,
            subject="WARNING: delayed mail.",
            human=intro
            + f"                     DELAYS IN DELIVERING YOUR MESSAGE\n\nThis is a warning message only.  Your message has not been delivered yet\nto the following recipients, and delivery attempts will continue:\n\n<{h}>:\n    mx.example.com [192.0.2.71]:\n<<< 421 4.3.2 Service shutting down, closing transmission channel\n\n"
            + "-" * 75
            + "\n",
            reporting_mta="dns; mail.example.org",
        ),
        expect(D, r(h, "delayed", False, kind=D)),
    )


# ---------------------------------------------------------------- Domino, Notes, James, MailMarshal, fml
def make_domino_and_more() -> None:
    a = "alan@example.com"
    body = (
        f"Your message\n\n  Subject: Your March newsletter\n\nwas not delivered to:\n\n  {a}\n\nbecause:\n\n  User Alan Smithee ({a}) not listed in Domino Directory\n\n"
        + original(a, n=1201, headers_only=True)
    )
    write(
        "domino",
        "not_listed_in_directory",
        plain(
            "Postmaster <Postmaster@notes.example.com>",
            f"DELIVERY FAILURE: User Alan Smithee ({a}) not listed in Domino Directory",
            body,
            n=1201,
            first=a,
        ),
        expect(B, r(a, "user_unknown", True)),
    )
    b = "bunko@example.jp"
    body = f"Your message\n\n  Subject: Your March newsletter\n\nwas not delivered to:\n\n  {b}\n\nbecause:\n\n  ユーザー {b} は Domino ディレクトリには見つかりません\n"
    write(
        "domino",
        "iso2022jp_not_found",
        plain(
            "Postmaster <Postmaster@notes.example.jp>",
            "DELIVERY FAILURE: Domino Directory",
            body,
            n=1202,
            first=b,
            charset="iso-2022-jp",
        ),
        expect(B, r(b, "user_unknown", True)),
    )
    c = "chen@example.org"
    body = (
        f"------- Failure Reasons  --------\n\nUser not listed in public Name & Address Book\n{c}\n\n------- Returned Message --------\n"
        + original(c, n=1203)
    )
    write(
        "domino",
        "notes_failure_reasons",
        plain(
            "Mail Router <router@notes.example.org>", "Undeliverable message", body, n=1203, first=c
        ),
        expect(B, r(c, "user_unknown", True)),
    )

    d = "dina@example.org"
    body = f"Hi. This is the James mail server at james.example.org.\nI'm afraid I wasn't able to deliver your message to the following addresses.\nThis is a permanent error; I've given up. Sorry it didn't work out.  Below\nI include the list of recipients and the reason why I was unable to deliver\nyour message.\n\nFailed recipient(s):\n{d}\n\nError message:\n550 5.1.1 <{d}>: Recipient address rejected: User unknown in virtual mailbox table\n\n"
    write(
        "james",
        "v3_failed_recipients",
        plain("MAILER-DAEMON@james.example.org", "[BOUNCE]", body, n=1301, first=d),
        expect(B, r(d, "user_unknown", True, "5.1.1")),
    )
    e = "emma@example.org"
    body = f"Error message below:\n550 - Requested action not taken: no such user here\n\nMessage details:\n  Subject: Your March newsletter\n  Sent date: Mon Mar 02 10:15:00 UTC 2026\n  MAIL FROM: news@shop.example.com\n  RCPT TO: {e}\n  From: Shop News <news@shop.example.com>\n  To: {e}\n  Size (in bytes): 1024\n  Number of lines: 12\n"
    write(
        "james",
        "v2_error_message_below",
        plain(
            "MAILER-DAEMON@james.example.org",
            "[BOUNCE]",
            body,
            n=1302,
            first=e,
            headers="X-Mailer: JavaMail\n",
        ).replace("<report-1302@mx.example.org>", "<1234.5678.JavaMail.james@james.example.org>"),
        expect(B, r(e, "user_unknown", True)),
    )

    f = "fred@example.com"
    body = (
        "Your message:\n   From:    news@shop.example.com\n   Subject: Your March newsletter\n\nCould not be delivered because of\n\n550 5.1.1 User unknown\n\nThe following recipients were affected:\n    "
        + f
        + "\n\nAdditional Information\n======================\n\nOriginal Sender:    <news@shop.example.com>\nSender-MTA:         <192.0.2.10>\nRemote-MTA:         <192.0.2.72>\nReporting-MTA:      <relay.example.com>\n"
    )
    write(
        "mailmarshal",
        "user_unknown",
        plain(
            "MailMarshal <mailmarshal@relay.example.com>",
            'Undeliverable Mail: "Your March newsletter"',
            body,
            n=1401,
            first=f,
        ),
        expect(B, r(f, "user_unknown", True, "5.1.1")),
    )

    g = "ml@example.org"
    body = f"Duplicated Message-ID in <{g}>.\n\nOriginal mail as follows:\n\n" + original(g, n=1501)
    write(
        "fml",
        "duplicated_message_id",
        plain(
            "ml-admin@example.org",
            "fml system error message",
            body,
            n=1501,
            first=g,
            headers="X-MLServer: fml [fml 4.0.3 release (20040721/4.0.3)]\n",
        ).replace("<report-1501@mx.example.org>", "<20260302101500.FML12345.ml@example.org>"),
        expect(B, r(g, "system_error", False)),
    )


# ---------------------------------------------------------------- gateways and unnamed MTAs
def make_appliances_and_unknown() -> None:
    a = "aldo@example.org"
    body = f"This is a MIME encoded message\n\nUnable to deliver message to: <{a}>\nDelivery failed for the following reason:\nServer mx.example.org[192.0.2.80] failed with: 550 <{a}> No such user here\n\nThis has been a permanent failure.  No further delivery attempts will be made.\n"
    write(
        "appliances",
        "mailfoundry_no_such_user",
        plain(
            "MAILER-DAEMON@gw.example.org",
            "Message delivery has failed",
            body,
            n=1601,
            first=a,
            headers="Received: from localhost (localhost [127.0.0.1]) by gw.example.org (MAILFOUNDRY) id abc123;\n",
        ),
        expect(B, r(a, "user_unknown", True)),
    )
    b = "bess@example.com"
    write(
        "appliances",
        "imail_unknown_user",
        plain(
            "Postmaster <postmaster@imail.example.com>",
            "Undeliverable Mail",
            f"Unknown user: {b}\n\nOriginal message follows.\n\n" + original(b, n=1602),
            n=1602,
            first=b,
            headers="X-Mailer: <SMTP32 v8.22>\n",
        ),
        expect(B, r(b, "user_unknown", True)),
    )
    c = "chika@example.jp"
    body = f"送信したメールは配信できませんでした。\n\nSent <<< RCPT TO:<{c}>\nReceived >>> 550 5.1.1 <{c}>... user unknown\n"
    write(
        "appliances",
        "interscan_user_unknown_utf8",
        plain(
            '"InterScan MSS" <postmaster@gw.example.jp>',
            "Mail could not be delivered",
            body,
            n=1603,
            first=c,
            charset="utf-8",
            cte="base64",
        ),
        expect(B, r(c, "user_unknown", True, "5.1.1")),
    )
    d = "dolf@example.com"
    mc = dsn(
        [Rcpt(d, "5.1.1", "smtp; 550 5.1.1 <{a}>... User unknown")],
        n=1604,
        sender="postmaster@gw.example.com",
        subject="Delivery Status",
        human=f"   --- The following addresses had delivery problems ---\n\n<{d}>   (User unknown {d})\n",
        extra_headers="X-NAI-Header: Modified by McAfee Email and Web Security Virtual Appliance\n",
    )
    write("appliances", "mcafee_user_unknown", mc, expect(B, r(d, "user_unknown", True, "5.1.1")))
    e = "eiko@example.jp"
    body = f"このメールは「m-FILTER」が自動的に生成して送信しています。\nメールサーバーとの通信中、下記の理由により\nこのメールは送信できませんでした。\n\n以下のメールアドレスへの送信に失敗しました。\n{e}\n\n\n-------server message\n550 5.1.1 unknown user <{e}>\n\n-------SMTP command\nRCPT\n\n-------original message\n"
    write(
        "appliances",
        "mfilter_iso2022jp",
        plain(
            "MAILER-DAEMON@gw.example.jp",
            "failure notice",
            body,
            n=1605,
            first=e,
            headers="X-Mailer: m-FILTER\n",
            charset="iso-2022-jp",
        ),
        expect(B, r(e, "user_unknown", True, "5.1.1")),
    )
    f = "femke@example.net"
    human = f"This report relates to a message you sent with the following header fields:\n\n  Message-id: <msg-1606@shop.example.com>\n  Date: {DATE}\n  From: Shop News <news@shop.example.com>\n  To: {f}\n  Subject: Your March newsletter\n\nYour message cannot be delivered to the following recipients:\n\n  Recipient address: {f}\n  Reason: Remote SMTP server has rejected address\n  Diagnostic code: smtp;550 5.1.1 <{f}>... User Unknown\n  Remote system: dns;mx.example.net (TCP|192.0.2.90|47323|192.0.2.81|25) (mx.example.net ESMTP)\n"
    write(
        "appliances",
        "messaging_server_rejected",
        dsn(
            [Rcpt(f, "5.1.1", "smtp;550 5.1.1 <{a}>... User Unknown")],
            n=1606,
            sender="Internet Mail Delivery <postmaster@ms.example.net>",
            subject="Delivery Notification: Delivery has failed",
            human=human,
        ),
        expect(B, r(f, "user_unknown", True, "5.1.1")),
    )
    g = "goro@example.jp"
    body = f"The original message was received at {DATE}\nfrom news@shop.example.com\n\n---The following addresses had delivery errors---\n\n{g} [User unknown]\n\n"
    write(
        "unknown_mtas",
        "x1_user_unknown",
        plain(
            '"Mail Deliver System" <MAILER-DAEMON@isp.example.jp>',
            "Returned Mail: User unknown",
            body,
            n=1701,
            first=g,
        ),
        expect(B, r(g, "user_unknown", True)),
    )
    h = "haru@example.jp"
    body = (
        "=" * 76
        + "\n      This is an automatically generated Delivery Status Notification.\n\nDelivery to the following recipients failed permanently:\n\n   * "
        + h
        + "\n\n\n"
        + "=" * 76
        + "\n                            Technical details:\n\nSMTP:RCPT host 192.0.2.82: 553 5.3.0 <"
        + h
        + ">... No such user here\n\n\n"
        + "=" * 76
        + "\n"
    )
    write(
        "unknown_mtas",
        "x3_no_such_user",
        plain(
            "Mail Delivery System <MAILER-DAEMON@isp.example.jp>",
            "Delivery status notification",
            body,
            n=1702,
            first=h,
        ),
        expect(B, r(h, "user_unknown", True, "5.3.0")),
    )
    i = "ichiro@example.jp"
    body = f"1 error(s):\n\nSMTP Server <mx.example.jp> rejected recipient <{i}>\n  (Error following RCPT command). It responded as follows: [550 5.1.1 User unknown]\n\nThe attachment contains the original mail headers.\n"
    write(
        "unknown_mtas",
        "x6_user_unknown",
        plain(
            "postmaster@isp.example.jp",
            "There was an error sending your mail",
            body,
            n=1703,
            first=i,
        ),
        expect(B, r(i, "user_unknown", True, "5.1.1")),
    )


def main() -> None:
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
