# ruff: noqa: E501  (fixture data tables read best one case per line)
"""Generate the none and forwarded fixture families
(``python -m kibamail.bounces.tests.make_misc_fixtures``).

Ordinary mail that must stay kind ``none`` (newsletters, personal replies, a DMARC
aggregate report mail, garbage), people forwarding bounces to us (inline in each mail
client's style, or attached), and bounces of bounces (only the outer recipients count).
"""

from __future__ import annotations

import zlib

from .fixture_kit import DATE, SENDER, Rcpt, dsn, expect, write


def _plain(
    sender: str, subject: str, body: str, extra: str = "", ctype: str = "text/plain; charset=utf-8"
) -> str:
    return (
        f"From: {sender}\nTo: info@shop.example.com\nSubject: {subject}\nDate: {DATE}\nMessage-ID: <m-{zlib.crc32(subject.encode())}@example.org>\n"
        f"{extra}MIME-Version: 1.0\nContent-Type: {ctype}\n\n{body}"
    )


def none() -> None:
    nothing = expect("none")
    write(
        "none",
        "personal_reply",
        _plain(
            "Hugo <hugo@example.org>",
            "Re: Your March newsletter",
            "Thanks, the new range looks great. Is the blue one in stock?\n\n> Hello,\n> Here is what is new this month.\n",
        ),
        nothing,
    )
    write(
        "none",
        "newsletter_vacation_deals",
        _plain(
            "Travel Deals <deals@travel.example.net>",
            "Vacation deals: out of office this summer?",
            "Book now and save 20%.\n",
            "List-Unsubscribe: <mailto:unsub@travel.example.net>\nList-Id: deals.travel.example.net\nPrecedence: bulk\n",
        ),
        nothing,
    )
    write(
        "none",
        "newsletter_html",
        _plain(
            "Weekly <weekly@news.example.com>",
            "This week: blocked sites and rejected ideas",
            "<html><body><p>Top story: why 550 people were <b>rejected</b>.</p><p>Contact &lt;editor@news.example.com&gt;</p></body></html>\n",
            "List-Unsubscribe: <https://news.example.com/u>\n",
            "text/html; charset=utf-8",
        ),
        nothing,
    )
    write(
        "none",
        "password_reset",
        _plain(
            "Accounts <no-reply@app.example.com>",
            "Reset your password",
            "Someone asked to reset your password. If it was not you, ignore this email.\n",
        ),
        nothing,
    )
    write(
        "none",
        "support_ticket_reply",
        _plain(
            "Support Agent <agent@help.example.com>",
            "Re: [Ticket #77] invoice question",
            "Hi, your invoice has been corrected. The user unknown in the report was our test account.\n",
        ),
        nothing,
    )
    dmarc = (
        'Content-Type: multipart/mixed; boundary="d"',
        '--d\nContent-Type: text/plain\n\nThis is an aggregate report from example.net.\n--d\nContent-Type: application/gzip; name="example.net!shop.example.com!1772409600!1772496000.xml.gz"\nContent-Transfer-Encoding: base64\n\nH4sIAAAAAAAAA7NJTc7PTUnNS0lVyEjNycnXUSjPL8pJUQQAl3hKsRMAAAA=\n--d--\n',
    )
    write(
        "none",
        "dmarc_aggregate_report",
        _plain(
            "noreply-dmarc-support@example.net",
            "Report domain: shop.example.com Submitter: example.net Report-ID: <1234567890>",
            dmarc[1],
            "Auto-Submitted: auto-generated\n",
            dmarc[0].split(": ", 1)[1],
        ),
        nothing,
    )
    write(
        "none",
        "calendar_invite",
        _plain(
            "Ivy <ivy@example.com>",
            "Invitation: Quarterly review @ Tue 10 Mar",
            "BEGIN:VCALENDAR\nMETHOD:REQUEST\nEND:VCALENDAR\n",
            ctype="text/calendar; method=REQUEST; charset=utf-8",
        ),
        nothing,
    )
    write("none", "empty_message", "From: nobody@example.org\nSubject: \n\n", nothing)
    write("none", "garbage_bytes", "\x00\x01not a mail at all\n\n--\n\xff", nothing)
    write(
        "none",
        "postmaster_notice_no_failure",
        _plain(
            "postmaster@example.org",
            "Your mailbox settings were updated",
            "Your forwarding settings were changed on 2 March 2026.\n",
        ),
        nothing,
    )
    write(
        "none",
        "multipart_alternative_marketing",
        _plain(
            "Shop <shop@example.net>",
            "Spring sale starts now",
            "--alt\nContent-Type: text/plain\n\nSale!\n--alt\nContent-Type: text/html\n\n<p>Sale!</p>\n--alt--\n",
            "List-Id: <promo.example.net>\n",
            'multipart/alternative; boundary="alt"',
        ),
        nothing,
    )


def forwarded() -> None:
    a = "quinn@example.org"
    postfix_text = (
        f"This is the mail system at host mx.example.org.\n\nI'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients.\n\n"
        f"<{a}>: host mx.example.org[198.51.100.2] said: 550 5.1.1 <{a}>:\n    Recipient address rejected: User unknown (in reply to RCPT TO command)\n"
    )
    fwd = (
        f"From: Rita Chen <rita@shop.example.com>\nTo: support@shop.example.com\nSubject: Fwd: Undelivered Mail Returned to Sender\nDate: {DATE}\nContent-Type: text/plain; charset=utf-8\n\n"
        f"Can you check this one?\n\n---------- Forwarded message ---------\nFrom: Mail Delivery System <MAILER-DAEMON@mx.example.org>\nDate: {DATE}\nSubject: Undelivered Mail Returned to Sender\nTo: <{SENDER}>\n\n{postfix_text}"
    )
    write(
        "forwarded",
        "gmail_inline_forward_postfix",
        fwd,
        expect("bounce", (a, "bounce", "user_unknown", True, "5.1.1")),
    )
    apple = (
        fwd.replace("---------- Forwarded message ---------", "Begin forwarded message:")
        .replace("From: Mail Delivery", 'From: "Mail Delivery"')
        .replace("Subject: Fwd:", "Subject: Fwd:")
    )
    write(
        "forwarded",
        "apple_begin_forwarded",
        apple,
        expect("bounce", (a, "bounce", "user_unknown", True, "5.1.1")),
    )
    quoted = fwd.split("---------- Forwarded message ---------\n")
    quoted_text = (
        quoted[0]
        + "---------- Forwarded message ---------\n"
        + "".join("> " + line + "\n" for line in quoted[1].splitlines())
    )
    write(
        "forwarded",
        "quoted_inline_forward",
        quoted_text,
        expect("bounce", (a, "bounce", "user_unknown", True, "5.1.1")),
    )
    inner = dsn([Rcpt("sol@example.net", "5.1.1", "smtp; 550 5.1.1 user unknown")], n=601)
    attached = (
        f"From: Rita Chen <rita@shop.example.com>\nTo: support@shop.example.com\nSubject: Fwd: Undelivered Mail Returned to Sender\nDate: {DATE}\nMIME-Version: 1.0\n"
        f'Content-Type: multipart/mixed; boundary="fw"\n\n--fw\nContent-Type: text/plain\n\nSee attached.\n--fw\nContent-Type: message/rfc822\n\n{inner}\n--fw--\n'
    )
    write(
        "forwarded",
        "attached_dsn_forward",
        attached,
        expect("bounce", ("sol@example.net", "bounce", "user_unknown", True, "5.1.1")),
    )
    outlook = (
        f"From: Tom <tom@shop.example.com>\nTo: support@shop.example.com\nSubject: FW: Undeliverable: Your March newsletter\nDate: {DATE}\nContent-Type: text/plain; charset=utf-8\n\n"
        "FYI\n\n-----Original Message-----\nFrom: Microsoft Outlook <postmaster@contoso.example.com>\nSent: Monday, March 2, 2026 10:16 AM\nTo: news@shop.example.com\nSubject: Undeliverable: Your March newsletter\n\n"
        "Delivery has failed to these recipients or groups:\n\numa@contoso.example.com\nThe email address you entered couldn't be found.\n\nRemote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'\n"
    )
    write(
        "forwarded",
        "outlook_original_message_ndr",
        outlook,
        expect("bounce", ("uma@contoso.example.com", "bounce", "user_unknown", True, "5.1.1")),
    )
    delayed = fwd.replace(
        postfix_text,
        f"This is the mail system at host mx.example.org.\n\n####################################################################\n# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n####################################################################\n\nReporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; {a}\nAction: delayed\nStatus: 4.4.1\nDiagnostic-Code: X-Postfix; connect to mx.example.org[198.51.100.2]:25: Connection timed out\n",
    ).replace("Undelivered Mail Returned to Sender", "Delayed Mail (still being retried)")
    write(
        "forwarded",
        "forwarded_delay_warning",
        delayed,
        expect("delayed", (a, "delayed", "delayed", False, "4.4.1")),
    )
    # Bounces of bounces: only the outer report's recipients count.
    inner_bounce = dsn(
        [Rcpt("victor@example.com", "5.1.1", "smtp; 550 5.1.1 user unknown")],
        n=602,
        to="wes@example.net",
    )
    outer = dsn(
        [Rcpt("wes@example.net", *("5.2.2", "smtp; 552 5.2.2 mailbox full"))],
        n=603,
        original_text=inner_bounce,
    )
    write(
        "forwarded",
        "bounce_of_bounce_dsn",
        outer,
        expect("bounce", ("wes@example.net", "bounce", "mailbox_full", False, "5.2.2")),
    )
    inner_plain = "From: MAILER-DAEMON@mx.example.com\nTo: xena@example.org\nSubject: failure notice\n\n<yusuf@example.com>:\n550 5.1.1 No such user\n"
    outer2 = dsn(
        [
            Rcpt(
                "xena@example.org",
                "5.1.1",
                "smtp; 550 5.1.1 <xena@example.org>: Recipient address rejected: User unknown",
            )
        ],
        n=604,
        original_text=inner_plain,
    )
    write(
        "forwarded",
        "bounce_of_plain_bounce",
        outer2,
        expect("bounce", ("xena@example.org", "bounce", "user_unknown", True, "5.1.1")),
    )


def main() -> None:
    none()
    forwarded()


if __name__ == "__main__":
    main()
