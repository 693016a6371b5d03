"""DMARC aggregate report XML (RFC 7489 classic schema and RFC 9990) -> AggregateReport.

Our own lxml walker rather than parsedmarc: parsedmarc builds dicts with
xmltodict, looks every source IP up and parses twice on sloppy input, which
makes it several times slower than this; its recovery rules (lxml
``recover=True``, lenient decoding, lowercased result words, defaults for
missing optional elements) are mirrored here and checked against it by
``bench/dmarc.py``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from lxml import etree

from deliverability.extract import to_utf8
from deliverability.models import (
    AggregateRecord,
    AggregateReport,
    DkimAuthResult,
    PolicyOverride,
    ReportError,
    SpfAuthResult,
)

RFC9990_NAMESPACE = "urn:ietf:params:xml:ns:dmarc-2.0"
_DOCTYPE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
_DECLARATION = re.compile(rb"^\s*(?:\xef\xbb\xbf)?<\?xml[^>]*\?>", re.IGNORECASE)
_ENCODING = re.compile(rb"encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']", re.IGNORECASE)
_BARE_AMPERSAND = re.compile(r"&(?!#\d+;|#x[0-9a-fA-F]+;|[A-Za-z][A-Za-z0-9]*;)")
_CLOSING_ROOT = re.compile(rb"</\s*(?:[A-Za-z0-9_.-]+:)?feedback\s*>", re.IGNORECASE)


def _parser(recover: bool) -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        recover=recover,
    )


_STRICT = _parser(recover=False)
_LENIENT = _parser(recover=True)


_LOCAL_NAMES: dict[str, str] = {}


def _local(tag: Any) -> str:
    """Namespace-free, lower-cased element name (memoized: the same few tags repeat)."""
    try:
        return _LOCAL_NAMES[tag]
    except (KeyError, TypeError):
        if not isinstance(tag, str):
            return ""
    name = tag.rpartition("}")[2].lower()
    if len(_LOCAL_NAMES) < 4096:
        _LOCAL_NAMES[tag] = name
    return name


def _children(element: Any) -> dict[str, Any]:
    """First child per (lower-cased, namespace-free) name."""
    found: dict[str, Any] = {}
    for child in element:
        name = _local(child.tag)
        if name and name not in found:
            found[name] = child
    return found


def _all(element: Any, name: str) -> list[Any]:
    return [child for child in element if _local(child.tag) == name]


def _text(element: Any) -> str | None:
    if element is None:
        return None
    text = (element.text or "").strip()
    return text or None


class _Warnings(list[str]):
    def once(self, message: str) -> None:
        if message not in self:
            self.append(message)


def _word(element: Any, default: str | None, warnings: _Warnings) -> str | None:
    """An enum token, lower-cased as the RFCs define them (warns on odd casing)."""
    value = _text(element)
    if value is None:
        return default
    lowered = value.lower()
    if lowered != value:
        warnings.once("normalized the casing of result/policy values")
    return lowered


def _load_tree(data: bytes, warnings: _Warnings) -> Any:
    """Parse strictly; on failure recover like parsedmarc does, recording why."""
    if _DOCTYPE.search(data):
        raise ReportError(
            "DOCTYPE/ENTITY declarations are not allowed in reports (XXE or entity expansion)"
        )
    if not _CLOSING_ROOT.search(data[-4096:]):
        if b"feedback" not in data[:4096].lower():
            raise ReportError("not a DMARC aggregate report (no <feedback> root element)")
        raise ReportError("truncated report: the closing </feedback> tag is missing")
    try:
        return etree.fromstring(data, _STRICT)
    except etree.XMLSyntaxError as exc:
        warnings.once(f"invalid XML recovered: {exc}")
    match = _ENCODING.search(data[:200])
    encoding = match.group(1).decode("ascii") if match else "utf-8"
    if encoding.lower().replace("_", "-").startswith(("utf-16", "utf16", "utf-32", "ucs")):
        # Wide text was transcoded before; these bytes are 8-bit whatever the label says.
        warnings.once(f"declared encoding {encoding!r} but the bytes are 8-bit: read as UTF-8")
        encoding = "utf-8"
    body = _DECLARATION.sub(b"", data, count=1)
    try:
        text = body.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        warnings.once(f"invalid bytes for the declared encoding {encoding!r} were replaced")
        text = body.decode(encoding if _known_codec(encoding) else "utf-8", errors="replace")
    if _BARE_AMPERSAND.search(text):
        warnings.once("unescaped '&' in free text was escaped")
        text = _BARE_AMPERSAND.sub("&amp;", text)
    root = etree.fromstring(text.encode("utf-8"), _LENIENT)
    if root is None:
        raise ReportError("not XML: nothing could be recovered")
    return root


def _known_codec(name: str) -> bool:
    try:
        "".encode(name)
    except LookupError:
        return False
    return True


def _unix_seconds(element: Any, field: str) -> int:
    value = _text(element)
    if value is None:
        raise ReportError(f"missing required field date_range/{field}")
    try:
        return int(float(value))
    except ValueError as exc:
        raise ReportError(f"date_range/{field} is not a UNIX timestamp: {value!r}") from exc


def _metadata(root: Any, children: dict[str, Any], warnings: _Warnings) -> dict[str, Any]:
    meta_el = children.get("report_metadata")
    if meta_el is None:
        raise ReportError("missing required section report_metadata")
    meta = _children(meta_el)
    contact = _text(meta.get("email"))
    org_name = _text(meta.get("org_name"))
    if org_name is None and contact:
        org_name = contact.rpartition("@")[2]
        warnings.once("org_name missing: taken from the reporter's email domain")
    if not org_name:
        raise ReportError("missing required field report_metadata/org_name")
    report_id = _text(meta.get("report_id"))
    if report_id is None:
        raise ReportError("missing required field report_metadata/report_id")
    report_id = report_id.replace("<", "").replace(">", "").split("@")[0]
    date_range = meta.get("date_range")
    if date_range is None:
        raise ReportError("missing required field report_metadata/date_range")
    dates = _children(date_range)
    begin = _unix_seconds(dates.get("begin"), "begin")
    end = _unix_seconds(dates.get("end"), "end")
    if end < begin:
        warnings.once("date_range end is before begin")
    return {
        "org_name": org_name,
        "email": contact,
        "extra_contact_info": _text(meta.get("extra_contact_info")),
        "report_id": report_id,
        "begin": begin,
        "end": end,
        "errors": [t for t in (_text(e) for e in _all(meta_el, "error")) if t],
        "generator": _text(meta.get("generator")),
    }


def _policy(children: dict[str, Any], warnings: _Warnings) -> dict[str, Any]:
    policy_el = children.get("policy_published")
    if policy_el is None:
        raise ReportError("missing required section policy_published")
    policy = _children(policy_el)
    domain = _text(policy.get("domain"))
    if domain is None:
        raise ReportError("missing required field policy_published/domain")
    p = _word(policy.get("p"), None, warnings)
    if p is None:
        warnings.once("policy_published/p missing")
    pct_text = _text(policy.get("pct"))
    pct: int | None = None
    if pct_text is not None:
        try:
            pct = int(float(pct_text))
        except ValueError:
            warnings.once(f"policy_published/pct is not a number: {pct_text!r}")
    return {
        "domain": domain.lower(),
        "adkim": _word(policy.get("adkim"), "r", warnings),
        "aspf": _word(policy.get("aspf"), "r", warnings),
        "p": p,
        "sp": _word(policy.get("sp"), p, warnings),
        "pct": pct,
        "fo": _text(policy.get("fo")),
        "np": _word(policy.get("np"), None, warnings),
        "testing": _word(policy.get("testing"), None, warnings),
        "discovery_method": _word(policy.get("discovery_method"), None, warnings),
    }


def _record(element: Any, warnings: _Warnings) -> AggregateRecord:
    parts = _children(element)
    row_el = parts.get("row")
    if row_el is None:
        raise ReportError("record without <row>")
    row = _children(row_el)
    source_ip = _text(row.get("source_ip"))
    if source_ip is None:
        raise ReportError("record without source_ip")
    try:
        source_ip = str(ipaddress.ip_address(source_ip))
    except ValueError as exc:
        raise ReportError(f"record source_ip is not an IP address: {source_ip!r}") from exc
    count_text = _text(row.get("count"))
    try:
        count = int(count_text or "")
    except ValueError as exc:
        raise ReportError(f"record count is not an integer: {count_text!r}") from exc
    evaluated_el = row.get("policy_evaluated")
    evaluated = _children(evaluated_el) if evaluated_el is not None else {}
    reasons = []
    if evaluated_el is not None:
        for reason_el in _all(evaluated_el, "reason"):
            reason = _children(reason_el)
            reasons.append(
                PolicyOverride(
                    type=_word(reason.get("type"), "other", warnings) or "other",
                    comment=_text(reason.get("comment")),
                )
            )
    ids_el = parts.get("identifiers")
    if ids_el is None:
        ids_el = parts.get("identities")
    ids = _children(ids_el) if ids_el is not None else {}
    auth_el = parts.get("auth_results")
    dkim_results: list[Any] = []
    spf_results: list[Any] = []
    if auth_el is not None:
        for dkim_el in _all(auth_el, "dkim"):
            dkim = _children(dkim_el)
            domain = _text(dkim.get("domain"))
            if domain is not None:
                dkim_results.append(
                    DkimAuthResult(
                        domain=domain.lower(),
                        selector=_text(dkim.get("selector")) or "none",
                        result=_word(dkim.get("result"), "none", warnings) or "none",
                        human_result=_text(dkim.get("human_result")),
                    )
                )
        for spf_el in _all(auth_el, "spf"):
            spf = _children(spf_el)
            domain = _text(spf.get("domain"))
            if domain is not None:
                spf_results.append(
                    SpfAuthResult(
                        domain=domain.lower(),
                        scope=_word(spf.get("scope"), "mfrom", warnings) or "mfrom",
                        result=_word(spf.get("result"), "none", warnings) or "none",
                        human_result=_text(spf.get("human_result")),
                    )
                )
    envelope_from = _text(ids.get("envelope_from"))
    if envelope_from is None and spf_results:
        envelope_from = spf_results[-1].domain
    return AggregateRecord(
        source_ip=source_ip,
        count=count,
        disposition=_word(evaluated.get("disposition"), "none", warnings) or "none",
        dkim=_word(evaluated.get("dkim"), "fail", warnings) or "fail",
        spf=_word(evaluated.get("spf"), "fail", warnings) or "fail",
        header_from=(_text(ids.get("header_from")) or "").lower(),
        envelope_from=envelope_from.lower() if envelope_from else None,
        envelope_to=_text(ids.get("envelope_to")),
        policy_override_reasons=reasons,
        auth_results={"dkim": dkim_results, "spf": spf_results},
    )


def parse_aggregate(data: bytes, source: str = "") -> AggregateReport:
    """Parse one aggregate report; raises ReportError with a readable reason."""
    warnings = _Warnings()
    root = _load_tree(to_utf8(data), warnings)
    if _local(root.tag) != "feedback":
        raise ReportError(
            f"not a DMARC aggregate report (root element <{_local(root.tag) or '?'}>)"
        )
    children = _children(root)
    metadata = _metadata(root, children, warnings)
    policy = _policy(children, warnings)
    namespace = etree.QName(root).namespace
    rfc9990 = (
        namespace == RFC9990_NAMESPACE
        or metadata["generator"] is not None
        or any(policy[k] is not None for k in ("np", "testing", "discovery_method"))
    )
    record_elements = _all(root, "record")
    if not record_elements:
        raise ReportError("report has no <record> elements")
    records = []
    for index, element in enumerate(record_elements):
        try:
            records.append(_record(element, warnings))
        except ReportError as exc:
            warnings.append(f"record {index} skipped: {exc}")
    if not records:
        raise ReportError(f"no usable records ({'; '.join(warnings[-3:])})")
    return AggregateReport(
        report_metadata=metadata,
        policy_published=policy,
        records=records,
        schema="rfc9990" if rfc9990 else "rfc7489",
        warnings=list(warnings),
        source=source,
    )
