# ruff: noqa: E501
"""Sendmail and Postfix fixtures (run by ``make_open_source_fixtures``)."""

from __future__ import annotations

from .fixture_kit import DATE, Rcpt, dsn, expect, original, write
from .make_open_source_fixtures import DL, B, D, plain, r

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
