# ruff: noqa: E501
"""OpenSMTPD, Courier, Domino/Notes, James, MailMarshal, fml, gateway and unnamed-MTA
fixtures (run by ``make_open_source_fixtures``)."""

from __future__ import annotations

from .fixture_kit import DATE, Rcpt, dsn, expect, original, write
from .make_open_source_fixtures import EXIM_OPEN, B, D, plain, r

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
