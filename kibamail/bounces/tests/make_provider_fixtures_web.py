# ruff: noqa: E501  (report texts read best one line per line of the report)
"""Writes the synthesized Google, Yahoo/AOL and Amazon SES fixtures.

Run ``.venv/bin/python -m kibamail.bounces.tests.make_provider_fixtures_web``; the generated
files are committed. Every message is invented (example.* domains, made-up people).
"""

from __future__ import annotations

from kibamail.bounces.tests.fixture_kit import Rcpt, original, write
from kibamail.bounces.tests.provider_fixture_kit import (
    dsn_part,
    headers,
    label,
    message,
    original_part,
    part,
)

GOOGLE = "Mail Delivery Subsystem <mailer-daemon@googlemail.com>"


def google() -> None:
    a = "old.friend@example.org"
    text = (
        "This is an automatically generated Delivery Status Notification\n\n"
        "Delivery to the following recipient failed permanently:\n\n"
        f"     {a}\n\n"
        "Technical details of permanent failure:\n"
        "Google tried to deliver your message, but it was rejected by the server for the recipient domain "
        "example.org by mx.example.org. [192.0.2.59].\n\n"
        "The error that the other server returned was:\n"
        f"550 5.1.1 <{a}>... User Unknown\n\n"
        "----- Original message -----\n\n" + original(a, n=521, headers_only=True)
    )
    hdr = headers(GOOGLE, "Delivery Status Notification (Failure)", 521, a)
    write(
        "google",
        "gmail_old_user_unknown",
        message(hdr, body=text.encode()),
        label("bounce", (a, "user_unknown", "5.1.1")),
    )

    b = "busy.person@example.net"
    text = (
        "This is an automatically generated Delivery Status Notification\n\n"
        "THIS IS A WARNING MESSAGE ONLY.\n\nYOU DO NOT NEED TO RESEND YOUR MESSAGE.\n\n"
        "Delivery to the following recipient has been delayed:\n\n"
        f"     {b}\n\nMessage will be retried for 2 more day(s)\n\n"
        "Technical details of temporary failure:\n"
        "Google tried to deliver your message, but it was rejected by the recipient domain. "
        "We recommend contacting the other email provider for further information about the cause of this error. "
        f"The error that the other server returned was: 450 450 4.2.2 <{b}>... Mailbox Full (state 14).\n\n"
        "----- Original message -----\n\n" + original(b, n=522, headers_only=True)
    )
    hdr = headers(GOOGLE, "Delivery Status Notification (Delay)", 522, b)
    write(
        "google",
        "gmail_old_delayed_qp",
        message(hdr, body=text.encode(), cte="7bit"),
        label("delayed", (b, "delayed", "4.2.2")),
    )

    c = "nobody@example.invalid"
    text = (
        "Delivery to the following recipient failed permanently:\n\n"
        f"     {c}\n\n"
        "Technical details of permanent failure:\nDNS Error: Domain name not found\n\n"
        "----- Original message -----\n\n" + original(c, n=523, headers_only=True)
    )
    hdr = headers(GOOGLE, "Delivery Status Notification (Failure)", 523, c)
    write(
        "google",
        "gmail_old_dns_domain_not_found",
        message(hdr, body=text.encode()),
        label("bounce", (c, "host_unknown", "")),
    )

    d = "gone.away@example.com"
    text = (
        "\n** Address not found **\n\n"
        f"Your message wasn't delivered to {d} because the address couldn't be found, or is unable to receive mail.\n\n"
        "Learn more here: https://support.google.com/mail/?p=NoSuchUser\n\nThe response was:\n\n"
        "550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking the "
        "recipient's email address for typos or unnecessary spaces. Learn more at "
        "https://support.google.com/mail/?p=NoSuchUser a1si123456qka.12 - gsmtp\n"
    )
    html = (
        "<html><body><h2>Address not found</h2><p>Your message wasn't delivered to "
        + d
        + ".</p></body></html>"
    )
    rc = Rcpt(
        d,
        status="5.1.1",
        remote="gmail-smtp-in.l.google.com. (142.250.0.27, the server for the domain example.com.)",
        diagnostic="smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try\n"
        " 550-5.1.1 double-checking the recipient's email address for typos or\n"
        " 550 5.1.1 unnecessary spaces. a1si123456qka.12 - gsmtp",
    )
    alt = (
        b"Content-Type: multipart/alternative; boundary=alt522\n\n--alt522\n"
        + part(text, cte="quoted-printable")
        + b"\n--alt522\n"
        + part(html, ctype="text/html", cte="quoted-printable")
        + b"\n--alt522--\n"
    )
    hdr = headers(GOOGLE, "Delivery Status Notification (Failure)", 524, d)
    write(
        "google",
        "gmail_address_not_found",
        message(
            hdr,
            [alt, dsn_part([rc], "dns; googlemail.com"), original_part(d, 524)],
            subtype="report",
            n=524,
        ),
        label("bounce", (d, "user_unknown", "5.1.1")),
    )

    e = "office.user@example.net"
    text = (
        "\n** Message blocked **\n\n"
        f"Your message to {e} has been blocked. See technical details below for more information.\n\n"
        "The response from the remote server was:\n"
        "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [DBAEUR03FT030.eop-EUR03.prod.protection.outlook.com]\n"
    )
    hdr = headers(GOOGLE, "Delivery Status Notification (Failure)", 525, e)
    write(
        "google",
        "gmail_message_blocked_edge_block",
        message(hdr, [part(text), original_part(e, 525)], n=525),
        label("bounce", (e, "user_unknown", "5.4.1")),
    )

    f = "team@example.org"
    text = (
        "\n** Message not delivered **\n\n"
        f"There was a problem delivering your message to {f}. See the technical details below, or try resending in a few minutes.\n\n"
        "The response from the remote server was:\n"
        "552 5.2.2 The email account that you tried to reach is over quota and inactive.\n"
    )
    hdr = headers(GOOGLE, "Delivery Status Notification (Failure)", 526, f)
    write(
        "google",
        "gmail_message_not_delivered_over_quota",
        message(hdr, [part(text, cte="base64"), original_part(f, 526)], n=526),
        label("bounce", (f, "mailbox_full", "5.2.2")),
    )

    g = "slow.server@example.com"
    text = (
        "\n** Delivery incomplete **\n\n"
        f"There was a temporary problem delivering your message to {g}. Gmail will retry for 46 more hours. "
        "You'll be notified if the delivery fails permanently.\n\n"
        "The response from the remote server was:\n451 4.3.0 Mail server temporarily rejected message.\n"
    )
    rc = Rcpt(
        g,
        status="4.3.0",
        action="delayed",
        remote="mx.example.com",
        diagnostic="smtp; 451 4.3.0 Mail server temporarily rejected message.",
    )
    hdr = headers(GOOGLE, "Delivery Status Notification (Delay)", 527, g)
    write(
        "google",
        "gmail_delivery_incomplete",
        message(
            hdr,
            [part(text), dsn_part([rc], "dns; googlemail.com"), original_part(g, 527)],
            subtype="report",
            n=527,
        ),
        label("delayed", (g, "delayed", "4.3.0")),
    )

    h = "client@example.com"
    text = (
        "\n** Message not delivered **\n\n"
        "You're sending this from a different address or alias using the 'Send mail as' feature. "
        "The settings for your 'Send mail as' account are misconfigured or out of date. Check those settings and try resending.\n\n"
        "Learn more here: https://support.google.com/mail/?p=CustomFromDenied\n\nThe response was:\n"
        "Unspecified Error (SENT_SECOND_EHLO): Smtp server does not advertise AUTH capability\n"
    )
    hdr = headers(GOOGLE, "Delivery Status Notification (Failure)", 528, h)
    write(
        "google",
        "workspace_send_mail_as",
        message(hdr, [part(text), original_part(h, 528)], n=528),
        label("bounce", (h, "security_error", "")),
    )

    grp = "announce@googlegroups.com"
    text = (
        "Hello news@shop.example.com,\n\n"
        "We're writing to let you know that the group you tried to contact (announce) may not exist, "
        "or you may not have permission to post messages to the group. A few more details on why you weren't able to post:\n\n"
        " * You might have spelled or formatted the group name incorrectly.\n"
        " * The owner of the group may have removed this group.\n"
        " * You may need to join the group before receiving permission to post.\n"
        " * This group may not be open to posting.\n\n"
        "If you have questions related to this or any other Google Group, visit the Help Center at "
        "https://groups.google.com/support/.\n\nThanks,\n\nGoogle Groups\n\n"
        "----- Original message -----\n\n" + original(grp, n=529, headers_only=True)
    )
    hdr = headers(
        GOOGLE, "Delivery Status Notification (Failure)", 529, grp, f"X-Failed-Recipients: {grp}\n"
    )
    write(
        "google",
        "google_groups_no_permission",
        message(hdr, body=text.encode()),
        label("bounce", (grp, "sender_rejected", "")),
    )


def yahoo() -> None:
    a, b = "sunny.day@example.com", "full.box@example.net"
    text = (
        "Sorry, we were unable to deliver your message to the following address.\n\n"
        f"<{a}>:\nRemote host said: 554 delivery error: dd This user doesn't have a example.com account "
        f"({a}) [0] - mta1001.mail.example.com [BODY]\n\n"
        f"<{b}>:\nRemote host said:\n552 5.2.2 <{b}>... Mailbox Full\n[RCPT_TO]\n\n"
        "--- Below this line is a copy of the message.\n\n" + original(a, n=531)
    )
    hdr = headers(
        "MAILER-DAEMON@yahoo.com",
        "Failure Notice",
        531,
        a,
        "X-YMailISG: 5pS9VyoWLDsbDh4aJg\nX-Originating-IP: [192.0.2.9]\n",
    )
    write(
        "yahoo",
        "yahoo_dd_and_full",
        message(hdr, body=text.encode()),
        label("bounce", (a, "user_unknown", ""), (b, "mailbox_full", "5.2.2")),
    )

    c = "typo@example.invalid"
    text = (
        "Sorry, we were unable to deliver your message to the following address.\n\n"
        f"<{c}>:\nNo MX or A records for example.invalid\n\n"
        "--- Below this line is a copy of the message.\n\n" + original(c, n=532, headers_only=True)
    )
    hdr = headers("MAILER-DAEMON@yahoo.com", "Failure Notice", 532, c)
    write(
        "yahoo",
        "yahoo_no_mx",
        message(hdr, body=text.encode(), cte="7bit"),
        label("bounce", (c, "host_unknown", "")),
        crlf=True,
    )

    d = "blocked.user@example.org"
    text = (
        "Sorry, we were unable to deliver your message to the following address.\n\n"
        f"<{d}>:\nRemote host said: 553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.10, "
        "because the ip is in Spamhaus's list; see http://postmaster.example.org/bl21 [CONNECT]\n\n"
        "--- Below this line is a copy of the message.\n\n" + original(d, n=533)
    )
    hdr = headers("MAILER-DAEMON@yahoo.com", "Failure Notice", 533, d)
    write(
        "yahoo",
        "yahoo_blocklisted",
        message(hdr, body=text.encode()),
        label("bounce", (d, "blocked", "5.7.1")),
    )

    e = "nx.domain@example.invalid"
    rc = Rcpt(e, status="5.4.4", remote="", diagnostic="")
    human = f"This is the mail system at host omr-m10.mx.aol.com.\n\n<{e}>: Host or domain name not found. Name service error for name=example.invalid type=A: Host not found\n"
    hdr = headers(
        "Mail Delivery System <MAILER-DAEMON@aol.com>",
        "Undelivered Mail Returned to Sender",
        534,
        e,
        "X-AOL-IP: 192.0.2.135\nX-AOL-VSS-CODE: clean\n",
    )
    rc.diagnostic = "X-Postfix; Host or domain name not found. Name service error for name=example.invalid type=A: Host not found"
    write(
        "yahoo",
        "aol_host_not_found",
        message(
            hdr,
            [part(human), dsn_part([rc], "dns; omr-m10.mx.aol.com"), original_part(e, 534)],
            subtype="report",
            n=534,
        ),
        label("bounce", (e, "host_unknown", "5.4.4")),
    )


SES = "X-SES-Outgoing: 2026.03.02-54.240.27.7\nFeedback-ID: 1.us-west-2.abcdEFGH=:AmazonSES\n"


def amazonses() -> None:
    a = "missing@example.org"
    rc = Rcpt(a, status="5.1.1", remote="", diagnostic="smtp; 550 5.1.1 user unknown")
    hdr = headers(
        "MAILER-DAEMON@amazonses.com", "Delivery Status Notification (Failure)", 541, a, SES
    )
    human = (
        f"An error occurred while trying to deliver the mail to the following recipients:\n{a}\n"
    )
    write(
        "amazonses",
        "ses_user_unknown",
        message(
            hdr,
            [
                part(human),
                dsn_part([rc], "dns; a27-23.smtp-out.us-west-2.amazonses.com"),
                original_part(a, 541),
            ],
            subtype="report",
            n=541,
        ),
        label("bounce", (a, "user_unknown", "5.1.1")),
    )

    b, c = "first@example.com", "second@example.com"
    diag = "smtp; 550 5.1.0 Unknown address error 550-'5.1.1 <{a}>: Recipient address rejected: User unknown in local recipient table'"
    rcs = [
        Rcpt(b, status="5.1.0", remote="", diagnostic=diag),
        Rcpt(c, status="5.1.0", remote="", diagnostic=diag),
    ]
    human = f"The following message to <{b}> was undeliverable.\nThe reason for the problem:\n5.1.0 - Unknown address error\n"
    hdr = headers(
        "MAILER-DAEMON@email-bounces.amazonses.com",
        "Delivery Status Notification (Failure)",
        542,
        b,
        "X-AWS-Outgoing: 199.255.192.156\n",
    )
    write(
        "amazonses",
        "ses_quoted_status_two_recipients",
        message(
            hdr,
            [
                part(human),
                dsn_part(rcs, "dns; a27-42.smtp-out.us-west-2.amazonses.com"),
                original_part(b, 542),
            ],
            subtype="report",
            n=542,
        ),
        label("bounce", (b, "user_unknown", "5.1.1"), (c, "user_unknown", "5.1.1")),
    )

    d = "slowpoke@example.net"
    rc = Rcpt(
        d,
        status="4.4.7",
        remote="",
        diagnostic="smtp; 554 4.4.7 Message expired: unable to deliver in 840 minutes.<421 4.4.0 Unable to lookup DNS for example.net>",
    )
    human = (
        "An error occurred while trying to deliver the mail to the following recipients:\n"
        + d
        + "\n"
    )
    hdr = headers(
        "MAILER-DAEMON@amazonses.com", "Delivery Status Notification (Failure)", 543, d, SES
    )
    write(
        "amazonses",
        "ses_expired",
        message(
            hdr,
            [
                part(human, cte="base64"),
                dsn_part([rc], "dns; a27-23.smtp-out.us-west-2.amazonses.com"),
            ],
            subtype="report",
            n=543,
        ),
        label("bounce", (d, "expired", "4.4.7")),
    )

    e = "shared@example.com"
    rc = Rcpt(e, status="5.0.0", remote="", diagnostic="smtp; 550 Mailbox does not exist")
    human = "This message could not be delivered.\n\n"
    hdr = headers(
        "MAILER-DAEMON@us-west-2.amazonses.com",
        "Delivery Status Notification (Failure)",
        544,
        e,
        "X-SES-Outgoing: 2026.03.02-54.240.27.9\n",
    )
    write(
        "amazonses",
        "ses_receiving_mailbox_does_not_exist",
        message(
            hdr,
            [
                part(human),
                dsn_part([rc], "dns; a27-55.smtp-out.us-west-2.amazonses.com"),
                original_part(e, 544, "text/rfc822-headers"),
            ],
            subtype="report",
            n=544,
        ),
        label("bounce", (e, "filtered", "5.0.0")),
    )

    f = "big.attachments@example.org"
    rc = Rcpt(f, status="5.3.4", remote="", diagnostic="smtp; 552 5.3.4 Message too large")
    hdr = headers(
        "MAILER-DAEMON@us-west-2.amazonses.com",
        "Delivery Status Notification (Failure)",
        545,
        f,
        "X-SES-Outgoing: 2026.03.02-54.240.27.9\n",
    )
    write(
        "amazonses",
        "ses_receiving_too_large",
        message(
            hdr,
            [
                part("This message could not be delivered.\n"),
                dsn_part([rc], "dns; a27-55.smtp-out.us-west-2.amazonses.com"),
            ],
            subtype="report",
            n=545,
        ),
        label("bounce", (f, "message_too_big", "5.3.4")),
    )

    g = "ghost@example.com"
    doc = (
        '{"Type":"Notification","MessageId":"0a1b2c3d-0000-4000-8000-000000000001",'
        '"Message":"{\\"notificationType\\":\\"Bounce\\",\\"bounce\\":{\\"bounceType\\":\\"Permanent\\",'
        '\\"bounceSubType\\":\\"General\\",\\"bouncedRecipients\\":[{\\"emailAddress\\":\\"'
        + g
        + '\\",'
        '\\"action\\":\\"failed\\",\\"status\\":\\"5.1.1\\",\\"diagnosticCode\\":\\"smtp; 550 5.1.1 user unknown\\"}],'
        '\\"timestamp\\":\\"2026-03-02T10:15:03.000Z\\",\\"reportingMTA\\":\\"dsn; a27-23.smtp-out.us-west-2.amazonses.com\\"},'
        '\\"mail\\":{\\"messageId\\":\\"0102018e0000-aaaa\\",\\"source\\":\\"news@shop.example.com\\"}}"}\n'
    )
    hdr = headers(
        "AWS Notifications <no-reply@sns.amazonaws.com>",
        "AWS Notification Message",
        546,
        g,
        "X-Amz-Sns-Message-Id: 0a1b2c3d-0000-4000-8000-000000000001\n",
    )
    write(
        "amazonses",
        "ses_sns_json_bounce",
        message(hdr, body=doc.encode()),
        label("bounce", (g, "user_unknown", "5.1.1")),
    )

    h = "stuffed@example.net"
    doc = (
        '{"notificationType":"Bounce","bounce":{"bounceType":"Transient","bounceSubType":"MailboxFull",'
        '"bouncedRecipients":[{"emailAddress":"' + h + '","action":"failed","status":"4.2.2",'
        '"diagnosticCode":"smtp; 452 4.2.2 mailbox full"}],"reportingMTA":"dsn; a27-23.smtp-out.us-west-2.amazonses.com"},'
        '"mail":{"messageId":"0102018e0000-bbbb"}}\n'
    )
    hdr = headers(
        "AWS Notifications <no-reply@sns.amazonaws.com>",
        "AWS Notification Message",
        547,
        h,
        "X-Amz-Sns-Message-Id: 0a1b2c3d-0000-4000-8000-000000000002\n",
    )
    write(
        "amazonses",
        "ses_sns_json_mailbox_full",
        message(hdr, body=doc.encode()),
        label("bounce", (h, "mailbox_full", "4.2.2")),
    )


if __name__ == "__main__":
    google()
    yahoo()
    amazonses()
