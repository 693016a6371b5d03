# ruff: noqa: E501  (fixture data tables read best one case per line)
"""Generate the arf and autoreply fixture families
(``python -m kibamail.bounces.tests.make_report_fixtures``).

Feedback loops and auto-replies are written in the shapes their senders use
(documented ARF fields, each loop's sender and subject, auto-reply headers and
localised subjects) with invented people and hosts.
"""

from __future__ import annotations

from email.header import Header

from .fixture_kit import DATE, encode, expect, original, return_path, write


def _arf(
    n: int,
    feedback: str,
    rcpt: str,
    *,
    sender: str = "Feedback Loop <fbl@isp.example.net>",
    agent: str = "ExampleFBL/1.0",
    extra_fields: str = "",
    rcpt_field: bool = True,
    original_to: str | None = None,
    original_type: str = "message/rfc822",
    human: str = "This is an email abuse report for an email message received from IP 192.0.2.10 on Mon, 02 Mar 2026 10:15:00 +0000.\n",
    feedback_cte: str = "7bit",
    subject: str = "Abuse report",
    to: str = "",
) -> str:
    msgid = f"msg-{n:04d}@shop.example.com"
    orig = original(rcpt, n=n, headers_only=original_type == "text/rfc822-headers")
    if original_to is not None:
        orig = orig.replace(f"To: <{rcpt}>", f"To: {original_to}")
    fields = (
        f"Feedback-Type: {feedback}\nUser-Agent: {agent}\nVersion: 1\n"
        f"Original-Mail-From: <{return_path(msgid, rcpt)}>\n"
        + (f"Original-Rcpt-To: <{rcpt}>\n" if rcpt_field else "")
        + f"Arrival-Date: {DATE}\nSource-IP: 192.0.2.10\nReported-Domain: shop.example.com\n"
        + extra_fields
    )
    b = f"=_arf_{n:04d}"
    return (
        f"From: {sender}\nTo: {to or 'abuse@shop.example.com'}\nSubject: {subject}\nDate: {DATE}\n"
        f"Message-ID: <arf-{n:04d}@isp.example.net>\nMIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type=feedback-report;\n\tboundary="{b}"\n\n'
        f"--{b}\nContent-Type: text/plain; charset=us-ascii\n\n{human}\n"
        f"--{b}\nContent-Type: message/feedback-report\nContent-Transfer-Encoding: {feedback_cte}\n\n{encode(fields, feedback_cte)}\n"
        f"--{b}\nContent-Type: {original_type}\n\n{orig}\n--{b}--\n"
    )


def _complaint(r: str, why: str = "complaint", suppress: bool = True) -> dict[str, object]:
    return expect("complaint", (r, "complaint", why, suppress, ""))


def arf() -> None:
    r = "carla@example.org"
    for i, kind in enumerate(("abuse", "fraud", "virus", "other")):
        write("arf", f"feedback_{kind}", _arf(400 + i, kind, r), _complaint(r))
    write("arf", "feedback_not_spam", _arf(405, "not-spam", r), _complaint(r, "not_spam", False))
    write(
        "arf",
        "feedback_auth_failure",
        _arf(406, "auth-failure", r, extra_fields="Auth-Failure: dmarc\n"),
        _complaint(r, "auth_failure", False),
    )
    # Redacted recipients: attribution by the return-path token or the platform id only.
    redacted = _arf(
        407,
        "abuse",
        r,
        rcpt_field=False,
        original_to="<redacted@example.org>",
        extra_fields="Redacted-Address: redacted@\n",
    )
    write("arf", "redacted_recipient_token", redacted, _complaint(""))
    headers_only = _arf(
        408,
        "abuse",
        r,
        rcpt_field=False,
        original_to="xxxxxxxx@example.org",
        original_type="text/rfc822-headers",
    )
    write(
        "arf",
        "redacted_recipient_platform_id",
        headers_only.replace("bounces+", "nobody+"),
        _complaint(""),
    )
    write(
        "arf",
        "yahoo_cfl",
        _arf(
            409,
            "abuse",
            "dana@example.net",
            sender="Yahoo! Mail AntiSpam Feedback <feedback@arf.mail.yahoo.com>",
            agent="Yahoo!-Mail-Feedback/2.0",
            subject="FW: Your March newsletter",
        ),
        _complaint("dana@example.net"),
    )
    write(
        "arf",
        "microsoft_jmrp_arf",
        _arf(
            410,
            "abuse",
            "erin@example.com",
            sender="staff@hotmail.com",
            agent="Microsoft Junk Mail Reporting Program",
            human="This is an email abuse report for an email message received from IP 192.0.2.10 on Mon, 02 Mar 2026 10:15:00 -0800\n",
        ),
        _complaint("erin@example.com"),
    )
    write(
        "arf",
        "comcast_removal_recipient",
        _arf(
            411,
            "abuse",
            "finn@example.org",
            rcpt_field=False,
            sender="Comcast Feedback Loop <feedbackloop@comcastfbl.example.net>",
            extra_fields="Removal-Recipient: finn@example.org\n",
        ),
        _complaint("finn@example.org"),
    )
    write(
        "arf",
        "mailru_fbl",
        _arf(
            412,
            "abuse",
            "gleb@example.ru",
            sender="fbl@corp.mail.example.ru",
            agent="Mail.Ru FBL/1.0",
            subject="Mail.Ru FBL report",
        ),
        _complaint("gleb@example.ru"),
    )
    write("arf", "feedback_base64", _arf(413, "abuse", r, feedback_cte="base64"), _complaint(r))
    write("arf", "feedback_crlf", _arf(414, "abuse", r), _complaint(r), crlf=True)
    write("arf", "feedback_opt_out_alias", _arf(415, "opt-out", r), _complaint(r))
    # Microsoft's legacy JMRP: multipart/mixed, the original's X-HmXmrOriginalRecipient.
    hm = original("hana@example.com", n=416).replace(
        "Return-Path:", "X-HmXmrOriginalRecipient: <hana@example.com>\nReturn-Path:"
    )
    jmrp = (
        f"From: staff@hotmail.com\nTo: fbl@shop.example.com\nSubject: complaint about message from 192.0.2.10\nDate: {DATE}\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="jm"\n\n--jm\nContent-Type: text/plain\n\nThis is a complaint about a message.\n'
        f"--jm\nContent-Type: message/rfc822\nContent-Disposition: inline\n\n{hm}\n--jm--\n"
    )
    write("arf", "microsoft_jmrp_legacy", jmrp, _complaint("hana@example.com"))
    aol = (
        f"From: scomp@aol.net\nTo: fbl@shop.example.com\nSubject: Client TOS Notification\nDate: {DATE}\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="aol"\n\n--aol\nContent-Type: text/plain\n\nThis is an email abuse report for an email message with the message-id of msg-0417@shop.example.com received from IP address 192.0.2.10 on Mon, 02 Mar 2026\n'
        f"--aol\nContent-Type: message/rfc822\n\n{original('ivan@example.com', n=417)}\n--aol--\n"
    )
    write("arf", "aol_legacy_tos", aol, _complaint("ivan@example.com"))
    ses = (
        f"From: complaints@email-abuse.amazonses.com\nTo: fbl@shop.example.com\nSubject: complaint about message from 192.0.2.10\nDate: {DATE}\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="ses"\n\n--ses\nContent-Type: text/plain\n\nFeedback-Type: abuse\nThis is a complaint about your message.\n'
        f"--ses\nContent-Type: message/rfc822\n\n{original('jill@example.net', n=418)}\n--ses--\n"
    )
    write("arf", "amazon_ses_complaint", ses, _complaint("jill@example.net"))
    plain = (
        f"From: abuse@isp.example.net\nTo: abuse@shop.example.com\nSubject: Abuse report\nDate: {DATE}\nContent-Type: text/plain\n\n"
        "This is an email abuse report for an email message received from IP 192.0.2.10 on Mon, 02 Mar 2026 10:15:00 +0000.\n\n"
        "Feedback-Type: abuse\nOriginal-Rcpt-To: <kim@example.org>\nSource-IP: 192.0.2.10\n\n"
        + original("kim@example.org", n=419)
    )
    write("arf", "plain_text_abuse_report", plain, _complaint("kim@example.org"))
    many = _arf(420, "abuse", r, extra_fields="Original-Rcpt-To: <lou@example.org>\n")
    write(
        "arf",
        "two_original_rcpt_to",
        many,
        expect(
            "complaint",
            (r, "complaint", "complaint", True, ""),
            ("lou@example.org", "complaint", "complaint", True, ""),
        ),
    )


AUTO = [
    # name, sender, subject (RFC 2047-encoded in the body's charset), extra headers, body, charset, cte
    (
        "outlook_automatic_reply",
        "Mia Lund <mia@example.com>",
        "Automatic reply: Your March newsletter",
        "X-Auto-Response-Suppress: All\nX-MS-Exchange-Inbox-Rules-Loop: mia@example.com\n",
        "I am out of the office until 9 March with limited access to email.\n",
        "utf-8",
        "7bit",
    ),
    (
        "gmail_vacation",
        "Ned Park <ned@example.net>",
        "Re: Your March newsletter",
        "Auto-Submitted: auto-replied\n",
        "Thanks for your email. I'm on vacation and will reply when I'm back.\n",
        "utf-8",
        "7bit",
    ),
    (
        "german_abwesenheit",
        "Olaf Bauer <olaf@example.de>",
        "Abwesenheitsnotiz: Your March newsletter",
        "",
        "Ich bin bis zum 10. März nicht im Büro. In dringenden Fällen wenden Sie sich an …\n",
        "iso-8859-1",
        "quoted-printable",
    ),
    (
        "french_reponse_automatique",
        "Paul Martin <paul@example.fr>",
        "Réponse automatique : Your March newsletter",
        "",
        "Je suis absent du bureau jusqu'au 9 mars.\n",
        "utf-8",
        "quoted-printable",
    ),
    (
        "spanish_respuesta",
        "Rosa Vega <rosa@example.es>",
        "Respuesta automática: Your March newsletter",
        "",
        "Estoy fuera de la oficina hasta el lunes.\n",
        "utf-8",
        "base64",
    ),
    (
        "italian_risposta",
        "Sara Conti <sara@example.it>",
        "Risposta automatica: Your March newsletter",
        "",
        "Sono fuori sede fino al 9 marzo.\n",
        "windows-1252",
        "quoted-printable",
    ),
    (
        "dutch_automatisch_antwoord",
        "Tim de Vries <tim@example.nl>",
        "Automatisch antwoord: Your March newsletter",
        "",
        "Ik ben afwezig tot 9 maart.\n",
        "utf-8",
        "7bit",
    ),
    (
        "swedish_autosvar",
        "Ulla Berg <ulla@example.se>",
        "Automatiskt svar: Your March newsletter",
        "",
        "Jag är tjänstledig till 9 mars.\n",
        "iso-8859-1",
        "quoted-printable",
    ),
    (
        "japanese_jidou_outou",
        "Yui Sato <yui@example.jp>",
        "自動応答: Your March newsletter",
        "",
        "ただいま不在にしております。3月9日以降に返信いたします。\n",
        "iso-2022-jp",
        "base64",
    ),
    (
        "russian_avtootvet",
        "Vera Orlova <vera@example.ru>",
        "Автоответ: Your March newsletter",
        "",
        "Я в отпуске до 9 марта.\n",
        "koi8-r",
        "base64",
    ),
    (
        "portuguese_resposta",
        "Wagner Lima <wagner@example.com.br>",
        "Resposta automática: Your March newsletter",
        "",
        "Estou fora do escritório até segunda-feira.\n",
        "utf-8",
        "quoted-printable",
    ),
    (
        "polish_odpowiedz",
        "Xawery Nowak <xawery@example.pl>",
        "Odpowiedź automatyczna: Your March newsletter",
        "",
        "Jestem na urlopie do 9 marca.\n",
        "utf-8",
        "quoted-printable",
    ),
    (
        "chinese_zidong_huifu",
        "Li Wei <liwei@example.cn>",
        "自动回复: Your March newsletter",
        "",
        "我正在休假, 3月9日回来。\n",
        "utf-8",
        "base64",
    ),
    (
        "yandex_x_autoreply",
        "Zoya <zoya@example.ru>",
        "Re: Your March newsletter",
        "X-Autoreply: yes\n",
        "Спасибо, я отвечу позже.\n",
        "utf-8",
        "base64",
    ),
    (
        "cpanel_x_autorespond",
        "Support <support@example.net>",
        "Thanks for contacting us",
        "X-Autorespond: Thanks for contacting us\n",
        "We received your message and will answer within 24 hours.\n",
        "utf-8",
        "7bit",
    ),
    (
        "precedence_auto_reply",
        "Abe <abe@example.org>",
        "Away",
        "Precedence: auto_reply\n",
        "I'm away this week.\n",
        "utf-8",
        "7bit",
    ),
    (
        "icloud_vacation",
        "Bea <bea@example.com>",
        "Re: Your March newsletter",
        "X-Apple-Action: vacation\n",
        "On holiday until Monday.\n",
        "utf-8",
        "7bit",
    ),
    (
        "out_of_office_subject_only",
        "Cal <cal@example.org>",
        "Out of Office: Your March newsletter",
        "",
        "I will be out of the office until 9 March.\n",
        "utf-8",
        "7bit",
    ),
    (
        "auto_generated_notice",
        "Helpdesk <helpdesk@example.com>",
        "[Ticket #4821] We received your request",
        "Auto-Submitted: auto-generated\n",
        "Your request has been received and a ticket was opened.\n",
        "utf-8",
        "7bit",
    ),
    (
        "tmda_challenge",
        "Dora <dora@example.net>",
        "Please confirm your message",
        "X-Delivery-Agent: TMDA/1.1.12 (Macallan)\nReply-To: dora-confirm-1741.abc123@example.net\n",
        "This message was created automatically by mail delivery software (TMDA).\nYour message has been held. To release it, please confirm by replying to this message.\n",
        "utf-8",
        "7bit",
    ),
    (
        "boxbe_guest_list",
        "Boxbe <notifications@boxbe.example.com>",
        "Request to join Emil's Guest List",
        "X-Boxbe-Mail-Id: 8a7f2c\n",
        "Your message to Emil is waiting. Please confirm you are a real person to be added to the Guest List.\n",
        "utf-8",
        "7bit",
    ),
    (
        "spamarrest_verify",
        "Fay <fay@example.org>",
        "[SpamArrest] Please verify your email address",
        "X-SpamArrest-Challenge: yes\n",
        "I use Spam Arrest. To verify that you sent the message, click the link below.\n",
        "utf-8",
        "7bit",
    ),
    (
        "generic_please_confirm",
        "Gus <gus@example.com>",
        "Please confirm that you sent this message",
        "",
        "Your message to gus@example.com is pending. Please confirm that you sent it by replying to this email.\n",
        "utf-8",
        "7bit",
    ),
]


def _subject(subject: str, charset: str) -> str:
    if subject.isascii():
        return subject
    return Header(subject, "utf-8" if charset in ("koi8-r", "windows-1252") else charset).encode()


def autoreply() -> None:
    for i, (name, sender, subject, extra, body, charset, cte) in enumerate(AUTO):
        text = (
            f"Return-Path: <{sender.split('<')[1].rstrip('>')}>\nFrom: {sender}\nTo: {return_path(f'msg-{500 + i:04d}@shop.example.com', 'x@example.org')}\n"
            f"Subject: {_subject(subject, charset)}\nDate: {DATE}\nMessage-ID: <auto-{500 + i}@example.net>\n{extra}MIME-Version: 1.0\n"
            f"Content-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: {cte}\n\n{encode(body, cte, charset)}"
        )
        who = sender.split("<")[1].rstrip(">").lower()
        write(
            "autoreply",
            name,
            text,
            expect("auto_reply", (who, "auto_reply", "auto_reply", False, "")),
        )


def main() -> None:
    arf()
    autoreply()


if __name__ == "__main__":
    main()
