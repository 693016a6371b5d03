# ruff: noqa: E501  (report texts read best one line per line of the report)
"""Writes the synthesized Exchange, Office 365 and Outlook.com fixtures.

Run ``.venv/bin/python -m kibamail.bounces.tests.make_provider_fixtures``; the generated
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

O365 = (
    "X-MS-Exchange-Message-Is-Ndr:\n"
    "X-MS-Exchange-CrossTenant-OriginalArrivalTime: 02 Mar 2026 10:15:03.0000 (UTC)\n"
    "X-MS-Exchange-CrossTenant-FromEntityHeader: Hosted\n"
    "Received: from AM0PR02MB1234.eurprd02.prod.outlook.com (2603:10a6::1) by\n"
    " AM0PR02MB9999.eurprd02.prod.outlook.com with HTTPS; Mon, 2 Mar 2026 10:15:03 +0000\n"
)
E2003 = "X-MimeOLE: Produced By Microsoft Exchange V6.5\nX-MS-Embedded-Report:\n"


def exchange() -> None:
    a, b = "kate.moss@example.org", "ravi.patel@example.org"
    text = (
        "Your message\n\n  To:      kate.moss@example.org\n  Subject: Your March newsletter\n"
        "  Sent:    Mon, 02 Mar 2026 10:15:00 +0000\n\ndid not reach the following recipient(s):\n\n"
        f"{a} on Mon, 02 Mar 2026 10:15:02 +0000\n    The recipient name is not recognized\n"
        "    The MTS-ID of the original message is: c=us;a= ;p=example;l=EXCH0103021015\n"
        "    MSEXCH:IMS:EXAMPLE:ORG:EXCH01 0 (000C05A6) Unknown Recipient\n"
        f"{b} on Mon, 02 Mar 2026 10:15:02 +0000\n    The recipient name is not recognized\n"
        "    MSEXCH:IMS:EXAMPLE:ORG:EXCH01 0 (000C05A6) Unknown Recipient\n"
    )
    hdr = headers(
        "System Administrator <postmaster@example.org>",
        "Undeliverable: Your March newsletter",
        501,
        a,
        E2003,
    )
    write(
        "exchange",
        "e2003_msexch_two_unknown",
        message(hdr, [part(text), original_part(a, 501)], n=501),
        label("bounce", (a, "user_unknown", ""), (b, "user_unknown", "")),
    )

    c = "li.wei@example.net"
    text = (
        "Your message did not reach some or all of the intended recipients.\n\n"
        "      Subject:\tYour March newsletter\n      Sent:\t3/2/2026 10:15 AM\n\n"
        "The following recipient(s) could not be reached:\n\n"
        f"      {c} on 3/2/2026 10:15 AM\n"
        "            The e-mail address you entered couldn't be found.\n"
        f"            <mx.example.net #5.1.1 smtp;550 5.1.1 <{c}>... User unknown>\n"
    )
    hdr = headers(
        "System Administrator <postmaster@example.net>",
        "Undeliverable: Your March newsletter",
        502,
        c,
    )
    write(
        "exchange",
        "e2003_smtp_user_unknown",
        message(hdr, [part(text), original_part(c, 502)], n=502),
        label("bounce", (c, "user_unknown", "5.1.1")),
    )

    d, e = "owen.hart@example.com", "mia.lopez@example.net"
    text = (
        "Your message did not reach some or all of the intended recipients.\n\n"
        "      Subject:\tYour March newsletter\n      Sent:\t3/2/2026 10:15 AM\n\n"
        "The following recipient(s) could not be reached:\n\n"
        f"      {d} on 3/2/2026 10:15 AM\n"
        "            The recipient's mailbox is full and can't accept messages now.\n"
        "            <mx.example.com #5.2.2 smtp;552 5.2.2 Mailbox quota exceeded for this recipient>\n\n"
        f"      {e} on 3/4/2026 10:15 AM\n"
        "            Could not deliver the message in the time limit specified.  Please retry or contact your administrator.\n"
        "            <exch02.example.org #4.4.7>\n"
    )
    hdr = headers(
        "System Administrator <postmaster@example.org>",
        "Undeliverable: Your March newsletter",
        503,
        d,
        E2003,
    )
    body = part(text, charset="windows-1252", cte="quoted-printable")
    write(
        "exchange",
        "e2003_full_and_expired_cp1252",
        message(hdr, [body, original_part(d, 503)], n=503),
        label("bounce", (d, "mailbox_full", "5.2.2"), (e, "expired", "4.4.7")),
        crlf=True,
    )

    f = "tom.baker@example.org"
    text = (
        "Delivery has failed to these recipients or groups:\n\n"
        f"{f}\nThe e-mail address you entered couldn't be found. Please check the recipient's e-mail address and try to resend the message.\n\n"
        "Diagnostic information for administrators:\n\nGenerating server: exch01.example.org\n\n"
        f"{f}\n#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##\n\nOriginal message headers:\n\n"
        + original(f, n=504, headers_only=True)
    )
    hdr = headers(
        "Microsoft Exchange <postmaster@example.org>",
        "Undeliverable: Your March newsletter",
        504,
        f,
        "Content-Language: en-US\n",
    )
    write(
        "exchange",
        "e2007_recipnotfound",
        message(hdr, body=text.encode()),
        label("bounce", (f, "user_unknown", "5.1.1")),
    )

    g = "ana.silva@example.com"
    text = (
        "Delivery has failed to these recipients or groups:\n\n"
        f"{g}\nA problem occurred during the delivery of this message to this e-mail address.\n\n"
        "Diagnostic information for administrators:\n\nGenerating server: exch02.example.org\n\n"
        f"{g}\n3/4/2026 10:15:00 AM - Remote Server at mx.example.com (192.0.2.25) returned '550 4.4.7 QUEUE.Expired; message expired'\n"
        "3/2/2026 10:20:00 AM - Remote Server at mx.example.com (192.0.2.25) returned '451 4.4.0 Primary target IP address responded with: \"421 4.4.2 Connection dropped.\" Attempted failover to alternate host, but that did not succeed.'\n\n"
        "Original message headers:\n\n" + original(g, n=505, headers_only=True)
    )
    hdr = headers(
        "Microsoft Exchange <postmaster@example.org>",
        "Undeliverable: Your March newsletter",
        505,
        g,
    )
    write(
        "exchange",
        "e2007_queue_expired",
        message(hdr, body=text.encode()),
        label("bounce", (g, "expired", "4.4.7")),
    )

    h = "jeanne.dupont@example.fr"
    text = (
        "La remise aux destinataires ou groupes suivants a échoué :\n\n"
        f"{h}\nL'adresse de messagerie que vous avez entrée est introuvable.\n\n"
        "Informations de diagnostic pour les administrateurs :\n\nServeur de génération : exch.example.fr\n\n"
        f"{h}\n#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##\n\n"
        "En-têtes de message d'origine :\n\n" + original(h, n=506, headers_only=True)
    )
    hdr = headers(
        "Microsoft Exchange <postmaster@example.fr>",
        "Non remis : Your March newsletter",
        506,
        h,
        "Content-Language: fr-FR\n",
    )
    write(
        "exchange",
        "e2007_french_latin1",
        message(
            hdr, body=text.encode("iso-8859-1"), single="text/plain; charset=iso-8859-1", cte="8bit"
        ),
        label("bounce", (h, "user_unknown", "5.1.1")),
    )

    i, j = "jonas.weber@example.de", "lena.vogel@example.de"
    text = (
        "Fehler bei der Zustellung an folgende Empfänger oder Gruppen:\n\n"
        f"{i}\nDie Nachricht ist für diesen Empfänger zu groß.\n\n{j}\nDas Postfach ist voll.\n\n"
        "Diagnoseinformationen für Administratoren:\n\nGenerierender Server: exch.example.de\n\n"
        f"{i}\n#550 5.2.3 RESOLVER.RST.RecipSizeLimit; message too large for this recipient ##\n\n"
        f"{j}\nVom Remoteserver wurde '552 5.2.2 mailbox full' zurückgegeben.\n\n"
        "Ursprüngliche Nachrichtenkopfzeilen:\n\n" + original(i, n=507, headers_only=True)
    )
    hdr = headers(
        "Microsoft Exchange <postmaster@example.de>",
        "Unzustellbar: Your March newsletter",
        507,
        i,
        "Content-Language: de-DE\n",
    )
    write(
        "exchange",
        "e2007_german_two_reasons",
        message(hdr, [part(text, cte="base64")], n=507),
        label("bounce", (i, "message_too_big", "5.2.3"), (j, "mailbox_full", "5.2.2")),
    )

    k = "yamada.taro@example.jp"
    text = (
        "次の受信者またはグループへの配信に失敗しました:\n\n"
        f"{k}\n入力した電子メール アドレスが見つかりませんでした。\n\n"
        "管理者向けの診断情報:\n\n生成サーバー: exch.example.jp\n\n"
        f"{k}\n#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##\n\n"
        "元のメッセージ ヘッダー:\n\n" + original(k, n=508, headers_only=True)
    )
    hdr = headers(
        "Microsoft Exchange <postmaster@example.jp>",
        "=?ISO-2022-JP?B?GyRCRz9BdzQwTjsbKEI=?=",
        508,
        k,
        "Content-Language: ja-JP\n",
    )
    write(
        "exchange",
        "e2007_japanese_iso2022jp",
        message(hdr, [part(text, charset="iso-2022-jp")], n=508),
        label("bounce", (k, "user_unknown", "5.1.1")),
    )


def office365() -> None:
    a = "sam.carter@example.com"
    text = (
        "Delivery has failed to these recipients or groups:\n\n"
        f"{a}<mailto:{a}>\nThe email address you entered couldn't be found. Please check the recipient's email address and try to send the message again. If the problem continues, please contact your helpdesk.\n\n"
        "Diagnostic information for administrators:\n\nGenerating server: AM0PR02MB1234.eurprd02.prod.outlook.com\n\n"
        f"{a}\nRemote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup'\n\n"
        "Original message headers:\n\nReceived: from mta1.shop.example.com (192.0.2.10) by AM0PR02MB1234.eurprd02.prod.outlook.com\n"
    )
    rc = Rcpt(
        a,
        status="5.1.10",
        remote="AM0PR02MB1234.eurprd02.prod.outlook.com",
        diagnostic="smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
    )
    hdr = headers(
        "Microsoft Outlook <postmaster@example.onmicrosoft.com>",
        "Undeliverable: Your March newsletter",
        511,
        a,
        O365,
    )
    parts = [
        part(text, cte="quoted-printable"),
        dsn_part([rc], "dns;AM0PR02MB1234.eurprd02.prod.outlook.com"),
        original_part(a, 511, "text/rfc822-headers"),
    ]
    write(
        "office365",
        "o365_recipient_not_found",
        message(hdr, parts, subtype="report", n=511),
        label("bounce", (a, "user_unknown", "5.1.10")),
    )

    b = "nina.berg@example.com"
    html = (
        "<html><body><table><tr><td><b>Your message to "
        f"{b} couldn't be delivered.</b></td></tr>"
        f"<tr><td>nina.berg wasn't found at example.com.</td></tr>"
        "<tr><td>Action Required</td><td>Recipient</td></tr><tr><td>Unknown To address</td></tr>"
        "<tr><td><b>More Info for Email Admins</b></td></tr><tr><td>Status code: 550 5.1.10</td></tr>"
        "<tr><td>Original Message Details</td></tr>"
        f"<tr><td>Recipient Address:</td><td>{b}</td></tr>"
        "<tr><td>Error Details</td></tr>"
        "<tr><td>Reported error:</td><td>550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup</td></tr>"
        "<tr><td>DSN generated by:</td><td>DB7PR02MB5555.eurprd02.prod.outlook.com</td></tr>"
        "</table></body></html>"
    )
    hdr = headers(
        "Microsoft Outlook <postmaster@example.onmicrosoft.com>",
        "Undeliverable: Your March newsletter",
        512,
        b,
        O365,
    )
    write(
        "office365",
        "o365_new_layout_html_only",
        message(hdr, [part(html, ctype="text/html", cte="base64"), original_part(b, 512)], n=512),
        label("bounce", (b, "user_unknown", "5.1.10")),
    )

    c, d = "leo.grant@example.net", "ivy.chen@example.net"
    html = (
        "<html><body><p><b>Your message to "
        f"{c} couldn't be delivered.</b></p><p>The recipient's email system rejected it.</p>"
        f"<p>Recipient Address: {c}</p><p>Recipient Address: {d}</p>"
        "<p>Reported error: 550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [DB5EUR01FT088.eop-EUR01.prod.protection.outlook.com]</p>"
        "</body></html>"
    )
    diag = "smtp;550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [DB5EUR01FT088.eop-EUR01.prod.protection.outlook.com]"
    parts = [
        part("Your message couldn't be delivered.\n"),
        part(html, ctype="text/html", cte="quoted-printable"),
        dsn_part(
            [
                Rcpt(
                    c,
                    status="5.4.1",
                    diagnostic=diag,
                    remote="example-net.mail.protection.outlook.com",
                ),
                Rcpt(
                    d,
                    status="5.4.1",
                    diagnostic=diag,
                    remote="example-net.mail.protection.outlook.com",
                ),
            ],
            "dns;DB5EUR01FT088.mail.protection.outlook.com",
        ),
        original_part(c, 513, "text/rfc822-headers"),
    ]
    hdr = headers(
        "Microsoft Outlook <postmaster@example.onmicrosoft.com>",
        "Undeliverable: Your March newsletter",
        513,
        c,
        O365,
    )
    write(
        "office365",
        "o365_edge_block_two_recipients",
        message(hdr, parts, subtype="report", n=513),
        label("bounce", (c, "user_unknown", "5.4.1"), (d, "user_unknown", "5.4.1")),
    )

    e = "max.power@example.org"
    text = (
        "Delivery has failed to these recipients or groups:\n\n"
        f"{e}<mailto:{e}>\nYour message wasn't delivered because the recipient's email provider rejected it.\n\n"
        "Diagnostic information for administrators:\n\nGenerating server: BN8PR02MB1111.namprd02.prod.outlook.com\n\n"
        f"{e}\nRemote Server returned '550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP. For more information please go to http://go.microsoft.com/fwlink/?LinkId=526653 AS(7229)'\n\n"
        "Original message headers:\n\n"
    )
    rc = Rcpt(
        e,
        status="5.7.708",
        remote="",
        diagnostic="smtp;550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.",
    )
    hdr = headers(
        "Microsoft Outlook <postmaster@example.onmicrosoft.com>",
        "Undeliverable: Your March newsletter",
        514,
        e,
        O365,
    )
    write(
        "office365",
        "o365_traffic_not_accepted",
        message(
            hdr,
            [part(text), dsn_part([rc], "dns;BN8PR02MB1111.namprd02.prod.outlook.com")],
            subtype="report",
            n=514,
        ),
        label("bounce", (e, "rate_limited", "5.7.708")),
    )

    f = "zoe.adams@example.com"
    text = (
        "Delivery has failed to these recipients or groups:\n\n"
        f"{f}<mailto:{f}>\nThe recipient's mailbox is full and can't accept messages now.\n\n"
        "Diagnostic information for administrators:\n\nGenerating server: SN6PR02MB2222.namprd02.prod.outlook.com\n\n"
        f"{f}\nRemote Server at mx.example.com (192.0.2.44) returned '552 5.2.2 Mailbox full. The user's mailbox is over quota'\n\n"
        "Original message headers:\n\n"
    )
    hdr = headers(
        "Microsoft Outlook <postmaster@example.onmicrosoft.com>",
        "Undeliverable: Your March newsletter",
        515,
        f,
        O365,
    )
    write(
        "office365",
        "o365_mailbox_full_remote_at",
        message(hdr, body=text.encode()),
        label("bounce", (f, "mailbox_full", "5.2.2")),
    )

    g = "paul.kim@example.net"
    text = (
        "Delivery has failed to these recipients or groups:\n\n"
        f"{g}<mailto:{g}>\nThe domain name in the email address is incorrect. Check the address and try again.\n\n"
        "Diagnostic information for administrators:\n\nGenerating server: SN6PR02MB2222.namprd02.prod.outlook.com\n\n"
        f"{g}\nRemote Server returned '554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain'\n\n"
        "Original message headers:\n\n"
    )
    hdr = headers(
        "Microsoft Outlook <postmaster@outlook.com>",
        "Undeliverable: Your March newsletter",
        516,
        g,
        O365,
    )
    write(
        "office365",
        "o365_nonexistent_domain",
        message(hdr, body=text.encode(), cte="7bit"),
        label("bounce", (g, "host_unknown", "5.4.4")),
    )

    h = "ada.byron@example.org"
    text = "This is an automatically generated Delivery Status Notification.\n\nDelivery to the following recipients failed.\n\n       ada.byron@example.org\n"
    rc = Rcpt(
        h,
        status="5.5.0",
        remote="mx.example.org",
        diagnostic="smtp;550 Requested action not taken: mailbox unavailable",
    )
    hdr = headers(
        "postmaster@hotmail.com",
        "Delivery Status Notification (Failure)",
        517,
        h,
        "X-Message-Delivery: Vj0xLjE7dXM9MDtsPTA7YT0wO0Q9MjtHRD0yO1NDTD0w\nX-Message-Info: qoqQuCvfHvd2e8gqBhP0Zw\n"
        "Received: from BAY0-MC1-F10.Bay0.hotmail.com ([10.1.1.1]) by bay0-omc1-s10.bay0.hotmail.com\n",
    )
    write(
        "office365",
        "outlook_com_mailbox_unavailable",
        message(
            hdr,
            [
                part(text),
                dsn_part([rc], "dns;BAY0-MC1-F10.Bay0.hotmail.com"),
                original_part(h, 517),
            ],
            subtype="report",
            n=517,
        ),
        label("bounce", (h, "user_unknown", "5.5.0")),
    )


if __name__ == "__main__":
    exchange()
    office365()
