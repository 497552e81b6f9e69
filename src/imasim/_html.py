"""HTML for notebooks: the ``_repr_html_`` of imasim's objects, rendered in one place.

Every piece of text that comes from an input (paths, key descriptions, error messages,
template names) is escaped; the markup uses inline styles only (no scripts, no external
stylesheets, fonts or images), so it renders the same in Jupyter, VS Code and a static
HTML export. Tables are bounded: a sequence longer than ``2 * EDGE_ROWS`` shows its first
and last ``EDGE_ROWS`` rows and one row saying how many were left out, and only those
rows are read (a list with a million entries renders as fast as one with twenty).

The classes call these functions from small ``_repr_html_`` methods; nothing here is
public API.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .algorithms import HashAlgorithm
    from .attest import AttestationReport
    from .ima.entry import MeasurementEntry
    from .ima.replay import MatchResult, ReplayResult
    from .keys.keyring import Keyring
    from .tpm.soft_tpm import SoftTpm

__all__: list[str] = []

#: rows shown at each end of a long table
EDGE_ROWS = 10
#: hex characters shown of a digest (the full value is in the cell's title)
DIGEST_CHARS = 16
#: bytes shown of a long binary field value (ima-buf data, signatures)
VALUE_BYTES = 48
#: characters shown of a long text value (paths, error messages)
TEXT_CHARS = 200

_OK = "#1a7f37"
_BAD = "#c62828"
_MUTED = "#666"
_STYLE = ("<style>.imasim table{border-collapse:collapse;font-size:12px;margin:2px 0}"
          ".imasim td,.imasim th{padding:1px 8px;text-align:left;vertical-align:top;"
          "border-bottom:1px solid #ddd}</style>")

T = TypeVar("T")


class Html(str):
    """Markup that is already safe; any other ``str`` put in a cell is escaped."""

    __slots__ = ()


def esc(value: object) -> Html:
    """``value`` as escaped text, cut to ``TEXT_CHARS`` characters."""
    text = str(value)
    if len(text) > TEXT_CHARS:
        text = text[:TEXT_CHARS] + f"… ({len(text)} characters)"
    return Html(html.escape(text, quote=True))


def cell(value: object) -> Html:
    return value if isinstance(value, Html) else esc(value)


def digest(value: bytes, chars: int = DIGEST_CHARS) -> Html:
    """A digest shortened to ``chars`` hex characters, the full value in the title."""
    full = value.hex()
    if len(full) <= chars:
        return Html(f"<code>{full}</code>")
    return Html(f'<code title="{full}">{full[:chars]}…</code>')


def blob(value: bytes) -> Html:
    """Bytes as hex, at most ``VALUE_BYTES`` of them, and the length."""
    if len(value) <= VALUE_BYTES:
        return Html(f"<code>{value.hex()}</code>")
    return Html(f"<code>{value[:VALUE_BYTES].hex()}…</code> "
                f'<span style="color:{_MUTED}">({len(value)} bytes)</span>')


def badge(ok: bool, text: str) -> Html:
    colour = _OK if ok else _BAD
    return Html(f'<b style="color:{colour}">{esc(text)}</b>')


def muted(text: str) -> Html:
    return Html(f'<span style="color:{_MUTED}">{esc(text)}</span>')


def bounded(count: int, get: Callable[[int], T], edge: int = EDGE_ROWS
            ) -> Iterable[tuple[int, T] | int]:
    """``(index, get(index))`` for the first and last ``edge`` indices of ``range(count)``,
    with the number of indices left out (an ``int``) in between; nothing else is read."""
    if count <= 2 * edge:
        for i in range(count):
            yield i, get(i)
        return
    for i in range(edge):
        yield i, get(i)
    yield count - 2 * edge
    for i in range(count - edge, count):
        yield i, get(i)


class Row(list[object]):
    """A table row whose ``<tr>`` gets an inline ``style``."""

    def __init__(self, cells: Iterable[object], style: str = "") -> None:
        super().__init__(cells)
        self.style = style


def table(headers: Sequence[str], rows: Iterable[Sequence[object] | int]) -> Html:
    """A table; an ``int`` row says that many rows were left out."""
    out = ["<table>"]
    if headers:
        out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers)
                   + "</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        if isinstance(row, int):
            out.append(f'<tr><td colspan="{max(len(headers), 1)}" style="color:{_MUTED}">'
                       f"… {row} more …</td></tr>")
            continue
        style = row.style if isinstance(row, Row) else ""
        out.append(f'<tr style="{style}">' if style else "<tr>")
        out += [f"<td>{cell(v)}</td>" for v in row]
        out.append("</tr>")
    out.append("</tbody></table>")
    return Html("".join(out))


def box(title: str, *parts: str) -> Html:
    """A titled block: a bold heading line followed by the parts (already HTML)."""
    return Html(f'<div class="imasim">{_STYLE}<div><b>{esc(title)}</b></div>'
                + "".join(parts) + "</div>")


def line(*parts: object) -> Html:
    return Html('<div style="margin:2px 0">' + "".join(cell(p) for p in parts) + "</div>")


def keyvalue(pairs: Iterable[tuple[str, object]]) -> Html:
    return table((), ([Html(f"<b>{esc(k)}</b>"), v] for k, v in pairs))


# -- measurement lists ---------------------------------------------------------------
def _entry_row(i: int, e: MeasurementEntry) -> Row:
    from .errors import ParseError

    try:
        fd = e.file_digest
        file_digest: object = (Html(f"{esc(fd.algo)}:{digest(fd.digest)}")
                               if fd is not None else "")
    except ParseError:
        file_digest = muted("malformed")
    return Row([i, e.pcr, e.template_name, digest(e.template_digest), file_digest,
                e._safe_name()], f"color:{_BAD}" if e.is_violation else "")


def measurement_list(lst: Sequence[MeasurementEntry], *, digest_alg: HashAlgorithm,
                     byte_order: str) -> Html:
    n = len(lst)
    rows = (r if isinstance(r, int) else _entry_row(*r) for r in bounded(n, lst.__getitem__))
    head = (f"MeasurementList: {n} entr{'y' if n == 1 else 'ies'}, "
            f"{digest_alg.kernel_name} template digests, {byte_order} endian")
    return box(head, table(("#", "PCR", "template", "template digest", "file digest",
                            "event name"), rows),
               line(muted("violations (zero template digest) in red")) if n else "")


def measurement_entry(e: MeasurementEntry) -> Html:
    from .errors import ParseError

    pairs: list[tuple[str, object]] = [
        ("PCR", e.pcr), ("template", e.template_name),
        ("template digest", digest(e.template_digest, 2 * len(e.template_digest))),
    ]
    if e.is_violation:
        pairs.append(("violation", badge(False, "yes: extended as 0xff..ff")))
    try:
        desc = e.descriptor
        raws = e.raw_fields()
        for spec, raw in zip(desc.fields, raws, strict=True):
            if spec.fmt.value == "hex":
                value: object = blob(raw) if raw else muted("(empty)")
            else:
                value = spec.ascii(raw, e.byte_order)
            pairs.append((f"{spec.id}", value))
    except ParseError as exc:
        pairs.append(("fields", badge(False, f"malformed: {exc}")))
    return box("MeasurementEntry", keyvalue(pairs))


# -- PCR banks -----------------------------------------------------------------------
def pcr_banks(values: Mapping[HashAlgorithm, Mapping[int, bytes]], title: str) -> Html:
    """One row per PCR, one column per bank; PCRs missing from a bank are left blank."""
    banks = list(values)
    indices = sorted({i for b in values.values() for i in b})
    rows = [[i, *(digest(values[a][i]) if i in values[a] else "" for a in banks)]
            for i in indices]
    return box(title, table(("PCR", *(a.kernel_name for a in banks)), rows))


def soft_tpm(tpm: SoftTpm) -> Html:
    values = {a: dict(enumerate(tpm.pcr_values(a))) for a in tpm.banks}
    title = (f"SoftTpm: banks {', '.join(a.kernel_name for a in tpm.banks)}; "
             f"resetCount {tpm.reset_count}, restartCount {tpm.restart_count}, "
             f"{len(tpm.keys)} attestation key(s)")
    return pcr_banks(values, title)


# -- replay and attestation ----------------------------------------------------------
def _indices(name: str, idx: Sequence[int]) -> Html:
    shown = [str(i) for i in idx[:2 * EDGE_ROWS]]
    more = f" … and {len(idx) - len(shown)} more" if len(idx) > len(shown) else ""
    return line(badge(False, f"{name}: "), esc(", ".join(shown) + more))


def replay_result(r: ReplayResult) -> Html:
    parts = [pcr_banks(r.pcrs, f"replayed PCR values after {r.count} entries")]
    if r.padded_banks:
        parts.append(line("padded SHA-1 banks: ",
                          ", ".join(sorted(a.kernel_name for a in r.padded_banks))))
    if r.bad_digests:
        parts.append(_indices("entries whose stored template digest is wrong",
                              r.bad_digests))
    return box("ReplayResult", *parts)


def match_result(m: MatchResult) -> Html:
    status = badge(m.matched, m.status.value)
    banks = table(("bank", "verdict", "padded SHA-1"), (
        [b.bank.kernel_name,
         badge(True, f"matches after {b.matched_at} of {m.entries} entries") if b.matched
         else badge(False, "does not match"),
         "yes" if b.padded else "no"] for b in m.banks))
    parts = [line("status: ", status),
             line("verified entries: ", f"{m.verified_count} of {m.entries}"), banks]
    if m.uncovered:
        parts.append(line("outside the quoted PCRs: ", "; ".join(str(u) for u in m.uncovered)))
    if m.mismatches:
        parts.append(table(("bank", "PCR", "quoted", "replayed"), (
            r if isinstance(r, int) else
            [r[1].bank.kernel_name, r[1].pcr, digest(r[1].expected), digest(r[1].computed)]
            for r in bounded(len(m.mismatches), m.mismatches.__getitem__))))
    if m.bad_digests:
        parts.append(_indices("entries whose stored template digest is wrong",
                              m.bad_digests))
    return box("MatchResult", *parts)


def attestation_report(rep: AttestationReport) -> Html:
    if rep.quote_valid:
        quote = badge(True, "valid")
    elif rep.quote_error is None:
        quote = badge(False, "none: the PCR values are unauthenticated")
    else:
        quote = badge(False, f"INVALID: {rep.quote_error}")
    label = {"trusted": "TRUSTED", "consistent": "CONSISTENT (no quote)",
             "not-trusted": "NOT TRUSTED"}[rep.status.value]
    parts = [line("verdict: ", badge(rep.trusted, label)),
             line("quote: ", quote),
             line("verified entries: ", f"{rep.verified_entries} of {rep.entries}"),
             line("boot_aggregate: ", badge(rep.boot_aggregate_ok,
                                            "ok" if rep.boot_aggregate_ok else "MISMATCH"))]
    if rep.replay is None:
        why = ("not replayed: the quote failed" if rep.pcrs is None
               else "no quoted bank covers the list's PCRs")
        parts.append(line("replay: ", badge(False, why)))
    else:
        parts.append(match_result(rep.replay))
    if rep.failures:
        f = rep.failures
        parts.append(line(f"{len(f)} failing entr{'y' if len(f) == 1 else 'ies'}:"))
        parts.append(table(("#", "event name", "verdict", "detail"), (
            r if isinstance(r, int) else
            [r[1].index, r[1].path, badge(False, r[1].verdict.value), r[1].detail]
            for r in bounded(len(f), f.__getitem__))))
    for n in rep.notes:
        parts.append(line("note: ", n))
    return box("AttestationReport", *parts)


# -- keyrings ------------------------------------------------------------------------
def keyring(ring: Keyring) -> Html:
    restriction = ring.restriction_name or "none (anyone may add)"
    keys = ring.keys
    parts = [line("restriction: ", Html(f"<code>{esc(restriction)}</code>"))]
    if ring.links:
        parts.append(line("linked keyrings: ", ", ".join(
            f"{r.name} ({len(r.keys)} keys)" for r in ring.links)))
    if ring.blacklist is not None:
        parts.append(line("blacklist: ", f"{len(ring.blacklist.entries())} hash(es)"))
    parts.append(table(("#", "description", "SKID", "CA", "self-signed"), (
        r if isinstance(r, int) else
        [r[0], r[1].description, digest(r[1].skid) if r[1].skid else muted("none"),
         "yes" if r[1].is_ca else "no", "yes" if r[1].self_signed else "no"]
        for r in bounded(len(keys), keys.__getitem__))) if keys else line(muted("no keys")))
    events = ring.log.events
    mine = [ev for ev in events[-200:] if ev.keyring == ring.name]
    if mine:
        recent = mine[-EDGE_ROWS:]
        parts.append(line(f"last {len(recent)} decisions of this keyring:"))
        parts.append(table(("key", "admitted", "reason"), (
            [ev.key, badge(ev.admitted, "yes" if ev.admitted else "refused"), ev.reason]
            for ev in recent)))
    return box(f"Keyring {ring.name}: {len(keys)} key(s)", *parts)
