"""A small PDF reader for verifiers: embedded files and signature byte ranges (standard library).

It reads what pikepdf and pyHanko write: classic cross-reference tables and cross-reference
streams (with PNG predictors), object streams (``/ObjStm``), incremental updates (``/Prev``),
and ``FlateDecode`` streams. It finds

- the embedded files: catalog ``/Names`` → ``/EmbeddedFiles`` name tree → file specification
  ``/EF`` ``/F`` → stream (checked against ``/Params`` ``/Size`` and ``/CheckSum`` when present);
- the signatures: AcroForm signature fields whose value has ``/ByteRange`` and ``/Contents``.
  Each byte range is checked against the raw file: two pieces around exactly one hex string, no
  whitespace in it, one letter case throughout, so that no byte outside the signed pieces can
  change without changing the signature bytes themselves.

It does not render pages or judge what incremental updates changed (``pdfsig`` does that).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass
from typing import Union

MAX_DEPTH = 64
MAX_OBJECTS = 1_000_000
MAX_DECODED = 512 * 1024 * 1024
WHITESPACE = b"\x00\t\n\x0c\r "
DELIMITERS = b"()<>[]{}/%"
_NUMBER = re.compile(rb"[+-]?(?:\d+\.?\d*|\.\d+)")
_INT = re.compile(rb"\d+")
_HEX = re.compile(rb"[0-9A-Fa-f]*")


class PdfError(ValueError):
    """Bytes that this reader cannot take for a well-formed PDF."""


class Name(str):
    """A PDF name, without its slash."""


@dataclass(frozen=True)
class Ref:
    number: int
    generation: int


@dataclass(frozen=True)
class Stream:
    dictionary: dict[str, PdfValue]
    raw: bytes  # the encoded bytes between "stream" and "endstream"


PdfValue = Union[  # noqa: UP007 (a recursive alias needs the string forms)
    None, bool, int, float, bytes, Name, Ref, list["PdfValue"], dict[str, "PdfValue"], Stream
]


# --- lexical level ------------------------------------------------------------------------------


def _skip(data: bytes, pos: int) -> int:
    """Skip whitespace and comments."""
    size = len(data)
    while pos < size:
        byte = data[pos]
        if byte in WHITESPACE:
            pos += 1
        elif byte == 0x25:  # %
            while pos < size and data[pos] not in b"\r\n":
                pos += 1
        else:
            break
    return pos


def _token_end(data: bytes, pos: int) -> int:
    size = len(data)
    while pos < size and data[pos] not in WHITESPACE and data[pos] not in DELIMITERS:
        pos += 1
    return pos


def _literal_string(data: bytes, pos: int) -> tuple[bytes, int]:
    """A ``( ... )`` string starting at ``pos`` (the parenthesis)."""
    out = bytearray()
    depth = 1
    pos += 1
    size = len(data)
    escapes = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("f"): 12}
    while pos < size:
        byte = data[pos]
        if byte == 0x5C:  # backslash
            pos += 1
            if pos >= size:
                break
            nxt = data[pos]
            if nxt in escapes:
                out.append(escapes[nxt])
                pos += 1
            elif nxt in b"01234567":
                end = pos
                while end < size and end < pos + 3 and data[end] in b"01234567":
                    end += 1
                out.append(int(data[pos:end], 8) & 0xFF)
                pos = end
            elif nxt == 0x0D:  # line continuation
                pos += 2 if data[pos + 1 : pos + 2] == b"\n" else 1
            elif nxt == 0x0A:
                pos += 1
            else:
                out.append(nxt)
                pos += 1
            continue
        if byte == 0x28:
            depth += 1
        elif byte == 0x29:
            depth -= 1
            if depth == 0:
                return bytes(out), pos + 1
        out.append(byte)
        pos += 1
    raise PdfError("unterminated string")


def _hex_string(data: bytes, pos: int) -> tuple[bytes, int]:
    end = data.find(b">", pos)
    if end < 0:
        raise PdfError("unterminated hex string")
    digits = data[pos + 1 : end].translate(None, WHITESPACE)
    if not _HEX.fullmatch(digits):
        raise PdfError("bad character in a hex string")
    if len(digits) % 2:
        digits += b"0"
    return bytes.fromhex(digits.decode("ascii")), end + 1


def _name(data: bytes, pos: int) -> tuple[Name, int]:
    end = _token_end(data, pos + 1)
    raw = data[pos + 1 : end]
    if b"#" in raw:
        raw = re.sub(rb"#([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw)
    return Name(raw.decode("latin-1")), end


def parse_value(data: bytes, pos: int, depth: int = 0) -> tuple[PdfValue, int]:
    """The direct object at ``pos`` (after whitespace) and the position after it."""
    if depth > MAX_DEPTH:
        raise PdfError("objects nested too deeply")
    pos = _skip(data, pos)
    if pos >= len(data):
        raise PdfError("unexpected end of file")
    byte = data[pos]
    if data.startswith(b"<<", pos):
        result: dict[str, PdfValue] = {}
        pos += 2
        while True:
            pos = _skip(data, pos)
            if data.startswith(b">>", pos):
                return result, pos + 2
            if pos >= len(data) or data[pos] != 0x2F:
                raise PdfError("a dictionary key is not a name")
            key, pos = _name(data, pos)
            result[key], pos = parse_value(data, pos, depth + 1)
    if byte == 0x3C:  # <
        return _hex_string(data, pos)
    if byte == 0x28:  # (
        return _literal_string(data, pos)
    if byte == 0x2F:  # /
        return _name(data, pos)
    if byte == 0x5B:  # [
        items: list[PdfValue] = []
        pos += 1
        while True:
            pos = _skip(data, pos)
            if data.startswith(b"]", pos):
                return items, pos + 1
            item, pos = parse_value(data, pos, depth + 1)
            items.append(item)
    match = _NUMBER.match(data, pos)
    if match:
        text = match.group()
        end = match.end()
        if _INT.fullmatch(text):
            # "n g R" is a reference.
            after = _skip(data, end)
            generation = _INT.match(data, after)
            if generation:
                after_generation = _skip(data, generation.end())
                if (
                    data.startswith(b"R", after_generation)
                    and _token_end(data, after_generation) == after_generation + 1
                ):
                    return Ref(int(text), int(generation.group())), after_generation + 1
            return int(text), end
        try:
            return (int(text) if _INT.fullmatch(text.lstrip(b"+-")) else float(text)), end
        except ValueError:
            raise PdfError(f"bad number {text!r}") from None
    end = _token_end(data, pos)
    word = data[pos:end]
    if word == b"true":
        return True, end
    if word == b"false":
        return False, end
    if word == b"null":
        return None, end
    raise PdfError(f"unexpected token {word[:20]!r} at offset {pos}")


# --- streams ------------------------------------------------------------------------------------


def _as_list(value: PdfValue) -> list[PdfValue]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _unpredict(data: bytes, params: dict[str, PdfValue]) -> bytes:
    predictor = params.get("Predictor", 1)
    if predictor in (1, None):
        return data
    if not isinstance(predictor, int) or predictor < 10:
        raise PdfError(f"unsupported predictor {predictor!r}")
    columns = params.get("Columns", 1)
    colors = params.get("Colors", 1)
    bits = params.get("BitsPerComponent", 8)
    if not (isinstance(columns, int) and isinstance(colors, int) and isinstance(bits, int)):
        raise PdfError("bad predictor parameters")
    pixel = max(1, colors * bits // 8)
    row_size = (columns * colors * bits + 7) // 8
    if row_size <= 0 or len(data) % (row_size + 1):
        raise PdfError("predicted data does not fill whole rows")
    out = bytearray()
    previous = bytearray(row_size)
    for start in range(0, len(data), row_size + 1):
        kind = data[start]
        row = bytearray(data[start + 1 : start + 1 + row_size])
        for i in range(row_size):
            left = row[i - pixel] if i >= pixel else 0
            up = previous[i]
            if kind == 1:
                row[i] = (row[i] + left) & 0xFF
            elif kind == 2:
                row[i] = (row[i] + up) & 0xFF
            elif kind == 3:
                row[i] = (row[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                corner = previous[i - pixel] if i >= pixel else 0
                estimate = left + up - corner
                pa, pb, pc = abs(estimate - left), abs(estimate - up), abs(estimate - corner)
                best = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                row[i] = (row[i] + best) & 0xFF
            elif kind != 0:
                raise PdfError(f"unknown PNG predictor {kind}")
        out += row
        previous = row
    return bytes(out)


def _inflate(data: bytes) -> bytes:
    if not data:
        return b""  # an empty embedded file is written as an empty FlateDecode stream (qpdf)
    decompressor = zlib.decompressobj()
    try:
        out = decompressor.decompress(data, MAX_DECODED)
    except zlib.error as exc:
        raise PdfError(f"damaged compressed stream: {exc}") from None
    if decompressor.unconsumed_tail:
        raise PdfError("a compressed stream is too large")
    if not decompressor.eof:
        raise PdfError("a compressed stream is cut short")
    return out


# --- the document -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PdfSignature:
    """One signature field's value: what it signs is ``data[0:a] + data[b:b + c]``."""

    field_name: str
    kind: str  # /Sig or /DocTimeStamp
    sub_filter: str
    byte_range: tuple[int, int, int, int]
    contents: bytes  # the DER bytes of the hex string, with its zero padding
    signing_time: str | None  # /M, a PDF date string

    def covers(self, size: int) -> bool:
        return self.byte_range[2] + self.byte_range[3] == size

    def signed_bytes(self, data: bytes) -> bytes:
        a, b, c, d = self.byte_range
        return data[a : a + b] + data[c : c + d]


class PdfDocument:
    """A parsed PDF: cross-reference sections, objects on demand, embedded files, signatures."""

    def __init__(self, data: bytes) -> None:
        if not data.startswith(b"%PDF-"):
            raise PdfError("not a PDF file (no %PDF- header)")
        self.data = data
        # object number -> ("offset", offset) or ("stream", container number, index)
        self._where: dict[int, tuple[int, int, int]] = {}
        self.trailer: dict[str, PdfValue] = {}
        self._objects: dict[int, PdfValue] = {}
        self._object_streams: dict[int, tuple[bytes, list[tuple[int, int]], int]] = {}
        self._read_xref_chain()

    # -- cross-reference ---------------------------------------------------------------------

    def _read_xref_chain(self) -> None:
        tail = self.data[-2048:]
        at = tail.rfind(b"startxref")
        if at < 0:
            raise PdfError("no startxref at the end of the file")
        number = _INT.match(tail, _skip(tail, at + len(b"startxref")))
        if not number:
            raise PdfError("startxref is not followed by an offset")
        offset: int | None = int(number.group())
        seen: set[int] = set()
        first = True
        while offset is not None:
            if offset in seen or len(seen) > 1000:
                raise PdfError("cross-reference sections loop")
            seen.add(offset)
            trailer = self._read_xref_section(offset)
            if first:
                self.trailer = trailer
                first = False
            extra = trailer.get("XRefStm")
            if isinstance(extra, int):
                self._read_xref_section(extra)
            previous = trailer.get("Prev")
            offset = previous if isinstance(previous, int) else None

    def _add(self, number: int, entry: tuple[int, int, int]) -> None:
        if number not in self._where:  # newer sections are read first and win
            if len(self._where) >= MAX_OBJECTS:
                raise PdfError("too many objects")
            self._where[number] = entry

    def _read_xref_section(self, offset: int) -> dict[str, PdfValue]:
        data = self.data
        if not 0 <= offset < len(data):
            raise PdfError(f"cross-reference offset {offset} is outside the file")
        if data.startswith(b"xref", offset):
            return self._read_xref_table(offset + 4)
        number, value = self._parse_indirect_at(offset)
        if not isinstance(value, Stream) or value.dictionary.get("Type") != "XRef":
            raise PdfError(f"no cross-reference at offset {offset}")
        self._read_xref_stream(value)
        return value.dictionary

    def _read_xref_table(self, pos: int) -> dict[str, PdfValue]:
        data = self.data
        while True:
            pos = _skip(data, pos)
            if data.startswith(b"trailer", pos):
                trailer, _ = parse_value(data, pos + 7)
                if not isinstance(trailer, dict):
                    raise PdfError("the trailer is not a dictionary")
                return trailer
            header = re.compile(rb"(\d+)[ \t]+(\d+)[ \t]*\r?\n?").match(data, pos)
            if not header:
                raise PdfError("bad cross-reference table")
            start, count = int(header.group(1)), int(header.group(2))
            pos = header.end()
            for index in range(count):
                row = data[pos : pos + 20]
                entry = re.fullmatch(rb"(\d{10}) (\d{5}) ([nf])[ \r\n]{2}", row)
                if not entry:
                    raise PdfError("bad cross-reference entry")
                if entry.group(3) == b"n":
                    self._add(start + index, (1, int(entry.group(1)), int(entry.group(2))))
                else:
                    self._add(start + index, (0, 0, 0))
                pos += 20

    def _read_xref_stream(self, stream: Stream) -> None:
        widths = stream.dictionary.get("W")
        size = stream.dictionary.get("Size")
        if (
            not isinstance(widths, list)
            or len(widths) != 3
            or not all(isinstance(w, int) and 0 <= w <= 8 for w in widths)
            or not isinstance(size, int)
        ):
            raise PdfError("bad cross-reference stream dictionary")
        w1, w2, w3 = (w for w in widths if isinstance(w, int))
        index = stream.dictionary.get("Index", [0, size])
        if not isinstance(index, list) or len(index) % 2:
            raise PdfError("bad cross-reference stream /Index")
        rows = self.decode(stream)
        row_size = w1 + w2 + w3
        position = 0
        for i in range(0, len(index), 2):
            start, count = index[i], index[i + 1]
            if not isinstance(start, int) or not isinstance(count, int):
                raise PdfError("bad cross-reference stream /Index")
            for number in range(start, start + count):
                row = rows[position : position + row_size]
                if len(row) != row_size:
                    raise PdfError("cross-reference stream is cut short")
                position += row_size
                kind = int.from_bytes(row[:w1], "big") if w1 else 1
                second = int.from_bytes(row[w1 : w1 + w2], "big")
                third = int.from_bytes(row[w1 + w2 :], "big")
                self._add(number, (kind, second, third) if kind in (1, 2) else (0, 0, 0))

    # -- objects -----------------------------------------------------------------------------

    def _parse_indirect_at(self, offset: int) -> tuple[int, PdfValue]:
        data = self.data
        header = re.compile(rb"(\d+)\s+(\d+)\s+obj").match(data, _skip(data, offset))
        if not header:
            raise PdfError(f"no object at offset {offset}")
        number = int(header.group(1))
        value, pos = parse_value(data, header.end())
        pos = _skip(data, pos)
        if isinstance(value, dict) and data.startswith(b"stream", pos):
            pos += 6
            if data.startswith(b"\r\n", pos):
                pos += 2
            elif data.startswith(b"\n", pos):
                pos += 1
            else:
                raise PdfError("'stream' is not followed by an end of line")
            length = value.get("Length")
            if isinstance(length, Ref):
                length = self.resolve(length)
            if not isinstance(length, int) or length < 0 or pos + length > len(data):
                raise PdfError(f"object {number}: bad stream /Length")
            raw = data[pos : pos + length]
            if not data.startswith(b"endstream", _skip(data, pos + length)):
                raise PdfError(f"object {number}: stream does not end where /Length says")
            return number, Stream(value, raw)
        return number, value

    def resolve(self, value: PdfValue, depth: int = 0) -> PdfValue:
        """Follow references until a direct value (null for objects that do not exist)."""
        while isinstance(value, Ref):
            if depth > 32:
                raise PdfError("reference chain too long")
            depth += 1
            value = self._object(value.number)
        return value

    def _object(self, number: int) -> PdfValue:
        if number in self._objects:
            return self._objects[number]
        self._objects[number] = None  # a reference back to itself reads as null
        where = self._where.get(number)
        value: PdfValue = None
        if where is not None and where[0] == 1:
            found, value = self._parse_indirect_at(where[1])
            if found != number:
                raise PdfError(f"object {number} is not at its cross-reference offset")
        elif where is not None and where[0] == 2:
            value = self._from_object_stream(where[1], where[2], number)
        self._objects[number] = value
        return value

    def _from_object_stream(self, container: int, index: int, number: int) -> PdfValue:
        if container not in self._object_streams:
            stream = self._object(container)
            if not isinstance(stream, Stream) or stream.dictionary.get("Type") != "ObjStm":
                raise PdfError(f"object {container} is not an object stream")
            count, first = stream.dictionary.get("N"), stream.dictionary.get("First")
            if not isinstance(count, int) or not isinstance(first, int):
                raise PdfError(f"object stream {container} lacks /N or /First")
            decoded = self.decode(stream)
            pairs: list[tuple[int, int]] = []
            pos = 0
            for _ in range(count):
                numbers = []
                for _ in range(2):
                    match = _INT.match(decoded, _skip(decoded, pos))
                    if not match:
                        raise PdfError(f"object stream {container} has a bad header")
                    numbers.append(int(match.group()))
                    pos = match.end()
                pairs.append((numbers[0], numbers[1]))
            self._object_streams[container] = (decoded, pairs, first)
        decoded, pairs, first = self._object_streams[container]
        if not 0 <= index < len(pairs) or pairs[index][0] != number:
            raise PdfError(f"object {number} is not in object stream {container}")
        value, _ = parse_value(decoded, first + pairs[index][1])
        return value

    def decode(self, stream: Stream) -> bytes:
        """The stream's bytes after its filters (FlateDecode, with PNG predictors)."""
        filters = _as_list(self.resolve(stream.dictionary.get("Filter")))
        params_list = _as_list(self.resolve(stream.dictionary.get("DecodeParms")))
        data = stream.raw
        for i, name in enumerate(filters):
            params = self.resolve(params_list[i]) if i < len(params_list) else None
            if name != "FlateDecode":
                raise PdfError(f"unsupported stream filter {name!r}")
            data = _inflate(data)
            if isinstance(params, dict):
                data = _unpredict(data, params)
        return data

    def get(self, dictionary: PdfValue, key: str) -> PdfValue:
        resolved = self.resolve(dictionary)
        if isinstance(resolved, Stream):
            resolved = resolved.dictionary
        if not isinstance(resolved, dict):
            return None
        return self.resolve(resolved.get(key))

    @property
    def catalog(self) -> dict[str, PdfValue]:
        root = self.resolve(self.trailer.get("Root"))
        if not isinstance(root, dict):
            raise PdfError("the trailer has no document catalog")
        return root

    # -- embedded files ----------------------------------------------------------------------

    def embedded_files(self) -> dict[str, bytes]:
        """Every embedded file by its name-tree name."""
        tree = self.get(self.get(self.catalog, "Names"), "EmbeddedFiles")
        files: dict[str, bytes] = {}
        for key, spec in self._name_tree(tree, 0):
            name = text_string(key)
            if name in files:
                raise PdfError(f"embedded file {name!r} appears twice")
            files[name] = self._file_bytes(spec, name)
        return files

    def _name_tree(self, node: PdfValue, depth: int) -> list[tuple[bytes, PdfValue]]:
        if depth > MAX_DEPTH:
            raise PdfError("name tree nested too deeply")
        node = self.resolve(node)
        if node is None:
            return []
        if not isinstance(node, dict):
            raise PdfError("a name tree node is not a dictionary")
        out: list[tuple[bytes, PdfValue]] = []
        names = self.resolve(node.get("Names"))
        if names is not None:
            if not isinstance(names, list) or len(names) % 2:
                raise PdfError("a name tree /Names array is malformed")
            for i in range(0, len(names), 2):
                key = self.resolve(names[i])
                if not isinstance(key, bytes):
                    raise PdfError("a name tree key is not a string")
                out.append((key, names[i + 1]))
        for kid in _as_list(self.resolve(node.get("Kids"))):
            out.extend(self._name_tree(kid, depth + 1))
        return out

    def _file_bytes(self, spec: PdfValue, name: str) -> bytes:
        embedded = self.get(spec, "EF")
        stream = self.resolve(self.get(embedded, "F") or self.get(embedded, "UF"))
        if not isinstance(stream, Stream):
            raise PdfError(f"embedded file {name!r} has no /EF /F stream")
        data = self.decode(stream)
        params = self.get(stream, "Params")
        size = self.get(params, "Size")
        if size is not None and size != len(data):
            raise PdfError(f"embedded file {name!r} is {len(data)} bytes, its /Size says {size!r}")
        checksum = self.get(params, "CheckSum")
        if isinstance(checksum, bytes) and hashlib.md5(data).digest() != checksum:  # noqa: S324
            raise PdfError(f"embedded file {name!r} does not match its /CheckSum")
        return data

    # -- signatures --------------------------------------------------------------------------

    def signatures(self) -> list[PdfSignature]:
        """Every signed signature field, checked against the raw bytes; ordered by coverage."""
        fields = _as_list(self.get(self.get(self.catalog, "AcroForm"), "Fields"))
        found: list[PdfSignature] = []
        stack: list[tuple[PdfValue, str, int]] = [(f, "", 0) for f in fields]
        while stack:
            field, parent_name, depth = stack.pop()
            if depth > MAX_DEPTH:
                raise PdfError("form fields nested too deeply")
            partial = self.get(field, "T")
            name = text_string(partial) if isinstance(partial, bytes) else ""
            full = f"{parent_name}.{name}" if parent_name and name else name or parent_name
            value = self.get(field, "V")
            if isinstance(value, dict) and "ByteRange" in value:
                found.append(self._signature(value, full))
            for kid in _as_list(self.get(field, "Kids")):
                stack.append((kid, full, depth + 1))
        found.sort(key=lambda s: s.byte_range[2] + s.byte_range[3])
        return found

    def _signature(self, value: dict[str, PdfValue], field_name: str) -> PdfSignature:
        data = self.data
        byte_range = self.resolve(value.get("ByteRange"))
        if (
            not isinstance(byte_range, list)
            or len(byte_range) != 4
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in byte_range)
        ):
            raise PdfError(f"signature {field_name!r}: /ByteRange is not four integers")
        a, b, c, d = (n for n in byte_range if isinstance(n, int))
        if a != 0 or b <= 0 or c <= b + 1 or d < 0 or c + d > len(data):
            raise PdfError(f"signature {field_name!r}: /ByteRange {byte_range} does not fit")
        if data[b : b + 1] != b"<" or data[c - 1 : c] != b">":
            raise PdfError(f"signature {field_name!r}: the gap is not exactly one hex string")
        digits = data[b + 1 : c - 1]
        if len(digits) % 2 or not _HEX.fullmatch(digits):
            raise PdfError(f"signature {field_name!r}: /Contents is not plain hex digits")
        if digits != digits.upper() and digits != digits.lower():
            raise PdfError(f"signature {field_name!r}: /Contents mixes upper- and lower-case hex")
        contents = bytes.fromhex(digits.decode("ascii"))
        if self.resolve(value.get("Contents")) != contents:
            raise PdfError(f"signature {field_name!r}: /Contents is not the hex string in the gap")
        end = data[: c + d].rstrip(b"\r\n")
        if not end.endswith(b"%%EOF"):
            raise PdfError(f"signature {field_name!r}: its range does not end a revision")
        kind = self.resolve(value.get("Type"))
        sub_filter = self.resolve(value.get("SubFilter"))
        moment = self.resolve(value.get("M"))
        return PdfSignature(
            field_name=field_name,
            kind=str(kind) if isinstance(kind, Name) else "Sig",
            sub_filter=str(sub_filter) if isinstance(sub_filter, Name) else "",
            byte_range=(a, b, c, d),
            contents=contents,
            signing_time=moment.decode("latin-1") if isinstance(moment, bytes) else None,
        )


def text_string(value: bytes) -> str:
    """A PDF text string: UTF-16BE with a byte-order mark, UTF-8 with one, else PDFDocEncoding
    (read as Latin-1, which agrees with it for the characters file names use)."""
    if value.startswith(b"\xfe\xff"):
        return value[2:].decode("utf-16-be")
    if value.startswith(b"\xef\xbb\xbf"):
        return value[3:].decode("utf-8")
    return value.decode("latin-1")


def read_embedded_files(data: bytes) -> dict[str, bytes]:
    """Every embedded file of a PDF by name (entries.jsonl, checkpoint, log.vkey, proofs...)."""
    return PdfDocument(data).embedded_files()
