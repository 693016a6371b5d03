# ruff: noqa: E501  (report texts read best one line per line of the report)
"""Writes the synthesized gateway, mailbox-provider and mobile-carrier fixtures.

Run ``.venv/bin/python -m kibamail.bounces.tests.make_provider_fixtures_more``; the
generated files are committed. Every message is invented (example.* domains, made-up
people); the carriers' reports are iso-2022-jp like the real ones.
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


def gateways() -> None:
    a = "ceo@example.com"
    text = (
        "Your message couldn't be delivered\n\n"
        "An email that you attempted to send to the following address could not be delivered:\n"
        f"-- {a}\n\nThe problem appears to be :\n-- Recipient email address is possibly incorrect\n\n"
        "Additional information follows :\n"
        "-- 5.4.1 Recipient address rejected: Access denied. AS(201806281) [SN1NAM02FT012.eop-nam02.prod.protection.outlook.com]\n\n"
        "This condition occurred after 1 attempt(s) to deliver over a period of 0 hour(s).\n"
    )
    hdr = headers(
        "Mimecast Postmaster <postmaster@mimecast.example.com>",
        "Mimecast Email Delivery Failure",
        551,
        a,
    )
    write(
        "gateways",
        "mimecast_edge_block",
        message(hdr, [part(text), original_part(a, 551)], n=551),
        label("bounce", (a, "user_unknown", "5.4.1")),
    )

    b, c = "sales@example.net", "support@example.net"
    text = (
        "An email that you attempted to send to the following address could not be delivered:\n"
        f"-- {b}\n-- {c}\n\nThe problem appears to be :\n-- Mailbox full\n\n"
        "Additional information follows :\n-- 552 5.2.2 Mailbox size limit exceeded\n"
    )
    hdr = headers(
        "postmaster@mimecast.example.com",
        "Email Delivery Failure",
        552,
        b,
        "X-MC-Unique: abcd1234\n",
    ).replace("report.example.net", "us-mta-25.us.mimecast.lan")
    write(
        "gateways",
        "mimecast_two_mailbox_full",
        message(hdr, [part(text, cte="quoted-printable")], n=552),
        label("bounce", (b, "mailbox_full", "5.2.2"), (c, "mailbox_full", "5.2.2")),
    )

    d = "hr@example.org"
    text = (
        "An email that you attempted to send to the following address could not be delivered:\n"
        f"-- {d}\n\nThe problem appears to be :\n-- Connection timed out\n\n"
        "Additional information follows :\n-- 4.4.7 Message delivery timed out after repeated attempts\n"
    )
    hdr = headers("postmaster@mimecast.example.com", "Mimecast Email Delivery Failure", 553, d)
    write(
        "gateways",
        "mimecast_expired",
        message(hdr, body=text.encode(), cte="7bit"),
        label("bounce", (d, "expired", "4.4.7")),
    )

    e = "former.staff@example.com"
    rc = Rcpt(e, status="5.0.0", remote="mx.example.com", diagnostic="smtp; 550 No such user")
    human = "This is an automatically generated message from the MessageLabs email security service.\n\nDelivery failed for the following recipient.\n"
    hdr = headers(
        "MAILER-DAEMON@messagelabs.com",
        "Mail Delivery Failure",
        554,
        e,
        "X-Msg-Ref: server-11.tower-143.messagelabs.com!1419367175!36473369!1\nX-StarScan-Version: 6.12.5\n",
    )
    write(
        "gateways",
        "messagelabs_no_such_user",
        message(
            hdr,
            [
                part(human),
                dsn_part([rc], "dns; server-11.tower-143.messagelabs.com"),
                original_part(e, 554, "text/rfc822-headers"),
            ],
            subtype="report",
            n=554,
        ),
        label("bounce", (e, "user_unknown", "5.0.0")),
    )

    f = "roamer@example.net"
    rc = Rcpt(
        f,
        status="5.7.1",
        remote="",
        diagnostic="smtp; 553 5.7.1 Please turn on SMTP Authentication in your mail client",
    )
    hdr = headers(
        "MAILER-DAEMON@messagelabs.com",
        "Mail Delivery Failure",
        555,
        f,
        "X-Msg-Ref: server-3.tower-21.messagelabs.com!1419367175!111!1\n",
    )
    write(
        "gateways",
        "messagelabs_auth_required",
        message(
            hdr,
            [part("Delivery failed.\n"), dsn_part([rc], "dns; server-3.tower-21.messagelabs.com")],
            subtype="report",
            n=555,
        ),
        label("bounce", (f, "security_error", "5.7.1")),
    )

    g = "buyer@example.org"
    rc = Rcpt(
        g,
        status="5.7.1",
        remote="",
        diagnostic="smtp; 550 5.7.1 Message rejected by Barracuda Spam Firewall",
    )
    human = (
        f"Your message to: {g}\nwas blocked by our Spam Firewall. The email you sent with the following subject "
        "has NOT BEEN DELIVERED:\n\nSubject: Your March newsletter\n"
    )
    hdr = headers(
        "Barracuda Spam Firewall <postmaster@example.org>",
        "**Message you sent blocked by our bulk email filter**",
        556,
        g,
    )
    write(
        "gateways",
        "barracuda_bulk_filter",
        message(
            hdr,
            [
                part(human),
                dsn_part([rc], "dns; barracuda.example.org"),
                original_part(g, 556, "text/rfc822-headers"),
            ],
            subtype="report",
            n=556,
        ),
        label("bounce", (g, "spam_detected", "5.7.1")),
    )

    h = "owner@example.com"
    human = (
        f"Your message to: {h}\nwas blocked by our Spam Firewall. The email you sent with the following subject "
        "has NOT BEEN DELIVERED:\n\nSubject: Your March newsletter\n"
    )
    hdr = headers(
        "Barracuda Spam Firewall <postmaster@example.com>",
        "**Message you sent blocked by our bulk email filter**",
        557,
        h,
    )
    write(
        "gateways",
        "barracuda_plain_text",
        message(hdr, body=human.encode()),
        label("bounce", (h, "spam_detected", "")),
    )


ZOHO = "X-ZohoMail: Si CHF_MF_NL SS_10 UW48 UB48 FMWL\nX-Mailer: Zoho Mail\n"


def mailboxes() -> None:
    a = "lost.user@example.com"
    text = (
        "This message was created automatically by mail delivery software.\n"
        "A message that you sent could not be delivered to one or more of its recipients. This is a permanent error.\n\n"
        f"{a} Invalid Address, ERROR_CODE :550, ERROR_CODE :5.1.1 <{a}>... User Unknown\n\n"
        "Received: from mail.zoho.com by mx.zohomail.com\n"
    )
    hdr = headers(
        "mailer-daemon@mail.zoho.com", "Undelivered Mail Returned to Sender", 561, a, ZOHO
    )
    write(
        "mailboxes",
        "zoho_invalid_address",
        message(hdr, body=text.encode()),
        label("bounce", (a, "user_unknown", "5.1.1")),
    )

    b = "far.away@example.net"
    text = (
        "This message was created automatically by mail delivery software.\n"
        "A message that you sent could not be delivered to one or more of its recipients. This is a temporary error.\n\n"
        f"[Status: Error, Address: <{b}>, ResponseCode 421, , Host not reachable.]\n"
    )
    hdr = headers(
        "mailer-daemon@mail.zoho.com", "Undelivered Mail Returned to Sender", 562, b, ZOHO
    )
    write(
        "mailboxes",
        "zoho_host_not_reachable",
        message(hdr, [part(text, cte="base64"), original_part(b, 562)], n=562),
        label("bounce", (b, "expired", "")),
    )

    c, d = "one@example.org", "two@example.org"
    text = (
        "This message was created automatically by mail delivery software.\n"
        "A message that you sent could not be delivered to one or more of its recipients. This is a permanent error.\n\n"
        f"{c} Invalid Address, ERROR_CODE :550, ERROR_CODE :Requested action not taken: mailbox unavailable\n"
        f"{d} Invalid Address, ERROR_CODE :552, ERROR_CODE :5.2.2 Mailbox quota exceeded\n"
    )
    hdr = headers(
        "mailer-daemon@mail.zoho.com", "Undelivered Mail Returned to Sender", 563, c, ZOHO
    )
    write(
        "mailboxes",
        "zoho_two_recipients",
        message(hdr, body=text.encode()),
        label("bounce", (c, "user_unknown", ""), (d, "mailbox_full", "5.2.2")),
        crlf=True,
    )

    e = "ivan.petrov@example.ru"
    human = (
        "This is the mail system at host yandex.ru.\n\nI'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients.\n\n"
        f"<{e}>: host mx.example.ru[192.0.2.77] said: 550 5.7.1 No such user!\n    (in reply to RCPT TO command)\n"
    )
    rc = Rcpt(e, status="5.7.1", remote="mx.example.ru", diagnostic="smtp; 550 5.7.1 No such user!")
    hdr = headers(
        "mailer-daemon@yandex.ru",
        "Undelivered Mail Returned to Sender",
        564,
        e,
        "X-Yandex-Front: mxback1h.mail.yandex.net\nX-Yandex-Uniq: 92309766-f1c8-4bd4-92bc-657c75766587\n",
    )
    write(
        "mailboxes",
        "yandex_no_such_user",
        message(
            hdr,
            [
                part(human, charset="koi8-r"),
                dsn_part([rc], "dns; mxback1h.mail.yandex.net"),
                original_part(e, 564),
            ],
            subtype="report",
            n=564,
        ),
        label("bounce", (e, "user_unknown", "5.7.1")),
    )

    f = "olga.smirnova@example.ru"
    human = (
        "This is the mail system at host yandex.ru.\n\n"
        f"<{f}>: host mx.example.ru[192.0.2.77] said: 452 4.2.2 Mailbox is full (in reply to RCPT TO command)\n"
    )
    rc = Rcpt(f, status="4.2.2", action="delayed", remote="mx.example.ru", diagnostic="")
    hdr = headers(
        "mailer-daemon@yandex.ru",
        "Delayed Mail (still being retried)",
        565,
        f,
        "X-Yandex-Uniq: 0a1b2c3d-1111-4bd4-92bc-657c75766587\n",
    )
    write(
        "mailboxes",
        "yandex_delayed_full",
        message(
            hdr,
            [part(human), dsn_part([rc], "dns; mxback1h.mail.yandex.net")],
            subtype="report",
            n=565,
        ),
        label("delayed", (f, "delayed", "4.2.2")),
    )

    g = "apple.fan@example.com"
    human = (
        "This is the mail system at host mr85p00im-ztdg06021101.me.com.\n\n"
        f"<{g}>: host mx.example.com[192.0.2.5] said: 550 5.1.1 <{g}>: user does not exist (in\n    reply to RCPT TO command)\n"
    )
    rc = Rcpt(
        g,
        status="5.1.1",
        remote="mx.example.com",
        diagnostic=f"smtp; 550 5.1.1 <{g}>: user does not exist",
    )
    hdr = headers(
        "Mail Delivery System <MAILER-DAEMON@icloud.com>",
        "Undelivered Mail Returned to Sender",
        566,
        g,
        "Received: from mr85p00im-ztdg06021101.me.com by ms43p00im-qufo17281801.me.com\n"
        "Received: from outbound.mr.icloud.com (mr85p00im.icloud.com [17.58.0.1])\n",
    )
    write(
        "mailboxes",
        "icloud_user_does_not_exist",
        message(
            hdr,
            [
                part(human),
                dsn_part([rc], "dns; mr85p00im-ztdg06021101.me.com"),
                original_part(g, 566),
            ],
            subtype="report",
            n=566,
        ),
        label("bounce", (g, "user_unknown", "5.1.1")),
    )

    h = "quota.hit@example.net"
    human = f"This is the mail system at host outbound.mr.icloud.com.\n\n<{h}>: host mx.example.net[192.0.2.6] said: 552 5.2.2 Quota exceeded (in reply to RCPT TO command)\n"
    hdr = headers(
        "MAILER-DAEMON@icloud.com",
        "Undelivered Mail Returned to Sender",
        567,
        h,
        "Received: from outbound.mr.icloud.com (mr85p00im.icloud.com [17.58.0.1])\n",
    )
    write(
        "mailboxes",
        "icloud_quota_no_dsn",
        message(hdr, [part(human), original_part(h, 567)], n=567),
        label("bounce", (h, "mailbox_full", "5.2.2")),
    )

    i = "no.longer@example.org"
    text = (
        "This is an automatically generated message from SendGrid.\n\n"
        "I'm sorry to have to tell you that your message was not able to be\ndelivered to one of its intended recipients.\n\n"
        "If you require assistance with this, please contact SendGrid support.\n\n"
        f"shironeko@example.org:*\n550 5.1.1 <{i}>: User unknown\n\n"
        f"Final-Recipient: rfc822; {i}\nAction: failed\nStatus: 5.0.0\n"
        f"Diagnostic-Code: 550 5.1.1 <{i}>: Recipient address rejected: User unknown in virtual alias table\n\n"
        + original(i, n=568, headers_only=True)
    )
    hdr = headers(
        "MAILER-DAEMON <apps@sendgrid.net>",
        "Undelivered Mail Returned to Sender",
        568,
        i,
        "X-Mailer: MIME-tools 5.502 (Entity 5.502)\n",
    ).replace("Return-Path: <>", "Return-Path: <apps@sendgrid.net>")
    write(
        "mailboxes",
        "sendgrid_text_fields",
        message(hdr, body=text.encode()),
        label("bounce", (i, "user_unknown", "5.1.1")),
    )

    j = "tardy@example.com"
    text = (
        "This is an automatically generated message from SendGrid.\n\n"
        f"Final-Recipient: rfc822; {j}\nAction: expired\nStatus: 4.0.0\n"
        "Diagnostic-Code: 421 4.4.2 Connection timed out\n\n"
    )
    hdr = headers(
        "MAILER-DAEMON <apps@sendgrid.net>", "Undelivered Mail Returned to Sender", 569, j
    ).replace("Return-Path: <>", "Return-Path: <apps@sendgrid.net>")
    write(
        "mailboxes",
        "sendgrid_expired",
        message(hdr, body=text.encode()),
        label("bounce", (j, "expired", "4.4.2")),
    )


def carriers() -> None:
    a = "taro.mobile@ezweb.ne.jp"
    text = (
        "お客様が送信されたメールは、宛先に配信できませんでした。\n\n"
        "Your mail sent on: Mon, 02 Mar 2026 19:15:00 +0900\n"
        f"    Could not be delivered to: <{a}>\n    As their mailbox is full.\n"
    )
    hdr = headers(
        "no-reply@app.example.dion.ne.jp",
        "Mail delivery failed",
        571,
        a,
        "Reply-To: no-reply@app.auone-net.jp\n"
        "Received: from mx.ezweb.ne.jp (mx.ezweb.ne.jp [192.0.2.88]) by smtp.example.dion.ne.jp\n",
    )
    write(
        "carriers",
        "kddi_mailbox_full_iso2022jp",
        message(hdr, [part(text, charset="iso-2022-jp"), original_part(a, 571)], n=571),
        label("bounce", (a, "mailbox_full", "")),
    )

    b = "hanako@example.au.com"
    text = (
        "Your mail attempted to be delivered on: Mon, 02 Mar 2026 19:15:00 +0900\n"
        f"    Could not be delivered to: <{b}>\n    As the remote domain doesnt exist.\n"
    )
    hdr = headers(
        "no-reply@app.example.dion.ne.jp",
        "Mail delivery failed",
        572,
        b,
        "Received: from msa.example.au.com (msa.example.au.com [192.0.2.89]) by mx.example.au.com\n",
    )
    write(
        "carriers",
        "kddi_domain_missing",
        message(hdr, body=text.encode("iso-2022-jp"), single="text/plain; charset=iso-2022-jp"),
        label("bounce", (b, "host_unknown", "")),
    )

    c = "spam.guard@ezweb.ne.jp"
    text = f"Your mail sent on: Mon, 02 Mar 2026 19:15:00 +0900\n    Could not be delivered to: <{c}>\n    The recipient refused it.\n"
    hdr = headers(
        "no-reply@app.example.dion.ne.jp",
        "Mail delivery failed",
        573,
        c,
        "X-SPASIGN: NG\nReceived: from mx.ezweb.ne.jp (mx.ezweb.ne.jp [192.0.2.88]) by smtp.example.dion.ne.jp\n",
    )
    write(
        "carriers",
        "kddi_spasign_filtered",
        message(hdr, [part(text, charset="iso-2022-jp", cte="base64")], n=573),
        label("bounce", (c, "filtered", "")),
    )

    ez = "Received: from mx01.ezweb.ne.jp (ezweb.ne.jp (EZweb Mail) with ESMTP id 1234)\n"
    d = "sleepy@ezweb.ne.jp"
    text = (
        "このメールは配信できませんでした。\n\nThe user(s) account is disabled.\n\n"
        f"<{d}>: 550 user unknown (in reply to RCPT TO command)\n\n" + "-" * 50 + "\n"
    )
    hdr = headers("Postmaster@ezweb.ne.jp", "Mail System Error - Returned Mail", 574, d, ez)
    write(
        "carriers",
        "ezweb_account_disabled",
        message(hdr, [part(text, charset="iso-2022-jp")], n=574),
        label("bounce", (d, "suspended", "")),
    )

    e = "quota@ezweb.ne.jp"
    text = f"The user(s) account is temporarily over quota.\n\n<{e}>\n"
    hdr = headers("Postmaster@ezweb.ne.jp", "Mail System Error - Returned Mail", 575, e, ez)
    write(
        "carriers",
        "ezweb_over_quota",
        message(hdr, body=text.encode("iso-2022-jp"), single="text/plain; charset=iso-2022-jp"),
        label("bounce", (e, "mailbox_full", "")),
    )

    f = "late.reply@ezweb.ne.jp"
    text = f"Your message was not delivered within 0 days and 1 hours.\nRemote host is not responding.\n\n<{f}>\n"
    hdr = headers("Postmaster@ezweb.ne.jp", "Mail System Error - Returned Mail", 576, f, ez)
    write(
        "carriers",
        "ezweb_not_delivered_within",
        message(hdr, [part(text, charset="iso-2022-jp"), original_part(f, 576)], n=576),
        label("bounce", (f, "expired", "")),
    )

    g = "5551234567@vtext.com"
    text = (
        "Error: Message could not be delivered.\n\nMessage details:\n  Subject: Your March newsletter\n"
        "  Sent date: Mon Mar 02 10:15:00 GMT 2026\n  MAIL FROM: news@shop.example.com\n"
        f"  RCPT TO: {g}\n  From: news@shop.example.com\n  To: {g}\n  Size (bytes): 1234\n"
        "  Number of recipients: 1\n\nDelivery status:\n  550 - Requested action not taken: no such user here\n"
    )
    hdr = headers(
        "post_master@vtext.com",
        "Undeliverable Message",
        577,
        g,
        "Received: from smtp.example.vtext.com (smtp.vtext.com (192.0.2.200)) by mx.example.com\n",
    )
    write(
        "carriers",
        "verizon_vtext_no_such_user",
        message(hdr, body=text.encode()),
        label("bounce", (g, "user_unknown", "")),
    )

    h = "5559876543@vzwpix.com"
    text = (
        "Message could not be delivered to mobile.\nError: No valid recipients for this MM\n\n"
        f"Original Message:\nFrom: Shop News <news@shop.example.com>\nTo: {h}\nSubject: Your March newsletter\n"
    )
    hdr = headers(
        "sysadmin@mms.example.vzwpix.com",
        "Undeliverable Message",
        578,
        h,
        "Received: from mms.vzwpix.com (mms.vzwpix.com [192.0.2.201]) by mx.example.com\n",
    )
    write(
        "carriers",
        "verizon_vzwpix_no_valid_recipients",
        message(hdr, body=text.encode()),
        label("bounce", (h, "user_unknown", "")),
    )

    i = "yuki@example.biglobe.ne.jp"
    text = (
        "このメールは配信できませんでした。\n\n   ----- The following addresses had delivery problems -----\n"
        f"{i}\n\n   ----- Non-delivered information -----\n"
        "The number of messages in recipient's mailbox exceeded the local limit.\n"
    )
    hdr = headers("postmaster@biglobe.ne.jp", "Returned mail: Delivery failed", 579, i)
    write(
        "carriers",
        "biglobe_mailbox_limit_iso2022jp",
        message(hdr, [part(text, charset="iso-2022-jp"), original_part(i, 579)], n=579),
        label("bounce", (i, "mailbox_full", "")),
    )

    j = "kenji@example.biglobe.ne.jp"
    text = (
        "   ----- The following addresses had delivery problems -----\n"
        f"{j}\n\n   ----- Non-delivered information -----\nMail Delivery Failed... User unknown\n"
    )
    hdr = headers("postmaster@biglobe.ne.jp", "Returned mail: User unknown", 580, j)
    write(
        "carriers",
        "biglobe_user_unknown_filtered",
        message(hdr, [part(text, charset="iso-2022-jp", cte="base64")], n=580),
        label("bounce", (j, "filtered", "")),
    )


if __name__ == "__main__":
    gateways()
    mailboxes()
    carriers()
