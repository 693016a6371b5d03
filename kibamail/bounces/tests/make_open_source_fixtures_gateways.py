# ruff: noqa: E501
"""Gateway appliances' and unnamed MTAs' fixtures (run by ``make_open_source_fixtures``)."""

from __future__ import annotations

from .fixture_kit import DATE, Rcpt, dsn, expect, original, write
from .make_open_source_fixtures import B, plain, r


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
