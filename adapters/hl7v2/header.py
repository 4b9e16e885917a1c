"""The MSH of a message, read without parsing the rest (so an ACK can always be addressed)."""

from __future__ import annotations

from adapters.hl7v2.contract import Header, MessageUnreadable
from adapters.hl7v2.decoding import DecodedMessage, decode, split_run_on_segments
from adapters.hl7v2.mapping_tables import tables

__all__ = ["decode_with_header"]


def decode_with_header(raw: bytes) -> tuple[Header, DecodedMessage]:
    """Decode ``raw`` (in the sender's character set) and read its MSH into a ``Header``.

    When MSH-18 is empty and the sender (MSH-3/MSH-4) has a configured ``charset`` in
    ``senders.csv`` other than the one detected, the message is decoded again with it.
    """
    decoded = decode(raw)
    header = _header(decoded)
    if not decoded.charset_declared:
        configured = tables().setting(header.sending_application, header.sending_facility, "charset")
        if configured and configured != decoded.charset:
            again = decode(raw, default_charset=configured)
            if again.charset == configured:
                decoded, header = again, _header(again)
    run_on = tables().setting(header.sending_application, header.sending_facility, "run_on_segments")
    if run_on and split_run_on_segments(decoded, run_on.split()):
        decoded.notes.append("Segments without terminators were split before the ids in run_on_segments")
    return header, decoded


def _header(decoded: DecodedMessage) -> Header:
    msh = decoded.lines[0]
    fs = decoded.field_separator
    fields = msh.split(fs)  # fields[n - 1] is MSH-n (fields[0] is "MSH", MSH-1 is the separator)

    def field(n: int, component: int | None = 1) -> str:
        value = fields[n - 1] if n - 1 < len(fields) else ""
        value = value.split(decoded.repetition_separator)[0]
        if component is not None:
            parts = value.split(decoded.component_separator)
            value = parts[component - 1] if component - 1 < len(parts) else ""
        return value.strip()

    if len(fields) < 10:
        raise MessageUnreadable(f"The MSH segment has {len(fields) + 1} fields; MSH-9 and MSH-10 are needed")
    message_code, trigger = field(9, 1), field(9, 2)
    return Header(
        sending_application=field(3), sending_facility=field(4),
        receiving_application=field(5), receiving_facility=field(6),
        message_type=f"{message_code}^{trigger}" if trigger else message_code,
        control_id=field(10), processing_id=field(11), version=field(12),
        charset=decoded.charset, charset_declared=decoded.charset_declared,
        accept_ack_type=field(15) or None, application_ack_type=field(16) or None,
        field_separator=fs, encoding_characters=decoded.encoding_characters,
    )
