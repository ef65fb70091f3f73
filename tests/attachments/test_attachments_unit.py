"""Attachment building blocks without a server: guard, sniffing, spooling, multipart, frames."""

from __future__ import annotations

import base64
import hashlib
import io
import ipaddress

import pytest
from PIL import Image

from glm_proxy.attachments import AllowList, BlockedAddress, FetchGuard, blocked_reason, sniff
from glm_proxy.attachments.blob import decode_data_url, spool
from glm_proxy.attachments.frames import frame_geometry, prepare_frame
from glm_proxy.attachments.guard import Unresolvable
from glm_proxy.errors import InvalidRequest, PayloadTooLarge
from glm_proxy.inputs.prompt import build_prompt
from glm_proxy.upstream.media import MultipartFile
from tests.support.fileserver import image_bytes, pdf_bytes

# -- SSRF guard -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.127.255.254",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "2002:7f00:1::1",
        "64:ff9b::a9fe:a9fe",
        "192.0.2.1",
        "198.18.0.1",
    ],
)
def test_non_public_addresses_are_blocked(address):
    assert blocked_reason(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize(
    "address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_pass(address):
    assert blocked_reason(ipaddress.ip_address(address)) is None


def fake_resolver(table):
    def resolve(host, port):
        if host not in table:
            raise Unresolvable(host)
        return table[host]

    return resolve


def test_every_resolved_address_is_checked():
    guard = FetchGuard(
        AllowList(),
        fake_resolver({"mixed.example": ["93.184.216.34", "10.0.0.5"], "ok.example": ["8.8.8.8"]}),
    )
    assert guard.resolve("ok.example", 443) == ["8.8.8.8"]
    with pytest.raises(BlockedAddress, match="mixed.example is not allowed") as info:
        guard.resolve("mixed.example", 443)
    assert "10.0.0.5" not in str(info.value) and "private" not in str(info.value)
    with pytest.raises(BlockedAddress, match="loopback"):
        guard.resolve("127.0.0.1", 80)
    with pytest.raises(BlockedAddress):
        guard.resolve("[::ffff:169.254.169.254]", 80)


def test_allow_list_takes_host_names_and_cidrs():
    allow = AllowList.parse(["files.internal", "10.0.0.0/8", "127.0.0.1", "", " FD00::/8 "])
    resolver = fake_resolver(
        {
            "files.internal": ["192.168.7.7"],
            "other.internal": ["10.9.9.9"],
            "v6.internal": ["fd00::5"],
            "bad.internal": ["192.168.1.1"],
        }
    )
    guard = FetchGuard(allow, resolver)
    assert allow.allows_host("FILES.internal.")
    assert guard.resolve("files.internal", 80) == ["192.168.7.7"]
    assert guard.resolve("other.internal", 80) == ["10.9.9.9"]
    assert guard.resolve("127.0.0.1", 80) == ["127.0.0.1"]
    assert guard.resolve("v6.internal", 80) == ["fd00::5"]
    with pytest.raises(BlockedAddress):
        guard.resolve("bad.internal", 80)
    with pytest.raises(BlockedAddress):
        guard.resolve("127.0.0.2", 80)


# -- sniffing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, kind, mime, name",
    [
        (image_bytes("PNG"), "image", "image/png", "shot.png"),
        (image_bytes("JPEG"), "image", "image/jpeg", "shot.png.jpg"),
        (image_bytes("WEBP"), "image", "image/webp", "shot.png.webp"),
        (pdf_bytes(), "file", "application/pdf", "shot.png.pdf"),
        ("纯文本 plain text\n".encode(), "file", "text/plain", "shot.png.txt"),
    ],
)
def test_sniff_goes_by_content_not_name(data, kind, mime, name):
    result = sniff(data[:8192], "image/png", "shot.png")
    assert (result.kind, result.mime) == (kind, mime)
    assert result.filename == name if kind != "image" or mime != "image/png" else "shot.png"


def test_sniff_names_unnamed_files_and_keeps_text_extensions():
    assert sniff(pdf_bytes()).filename.endswith(".pdf")
    assert sniff(b"a,b\n1,2\n", "text/csv", "table.csv") == sniff(b"a,b\n", "text/csv", "table.csv")
    assert sniff(b"a,b\n1,2\n", "text/csv", "table.csv").filename == "table.csv"
    assert sniff(b"\x00\x01\x02binary", "", "blob.bin").kind == "file"


# -- spooling and data URLs ------------------------------------------------------------


def test_spool_stops_reading_at_the_limit():
    produced = []

    def chunks():
        for i in range(1000):
            produced.append(i)
            yield b"x" * 1024

    with pytest.raises(PayloadTooLarge, match="limit of 10240 bytes"):
        spool(chunks(), limit=10 * 1024, source="http://h/big")
    assert len(produced) == 11  # never read past the chunk that crossed the limit


def test_spool_hashes_and_rolls_over_to_disk():
    data = b"abc" * 700_000  # 2.1 MB > the in-memory spool
    with spool([data[:1000], data[1000:]], limit=len(data), source="x") as blob:
        assert blob.size == len(data)
        assert blob.sha256 == hashlib.sha256(data).hexdigest()
        assert blob.file._rolled  # on disk, not in RAM
        assert blob.read_all() == data


def test_data_urls_decode_in_slices_with_whitespace_and_urlsafe_alphabet():
    raw = bytes(range(256)) * 5000
    encoded = base64.b64encode(raw).decode()
    wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
    with decode_data_url("data:application/pdf;base64," + wrapped, limit=len(raw)) as blob:
        assert blob.read_all() == raw and blob.declared_type == "application/pdf"
    urlsafe = base64.urlsafe_b64encode(raw[:1000]).decode().rstrip("=")
    with decode_data_url("data:;base64," + urlsafe, limit=10_000) as blob:
        assert blob.read_all() == raw[:1000]
    with decode_data_url("data:text/plain,hello%20world", limit=100) as blob:
        assert blob.read_all() == b"hello world"


def test_data_url_errors():
    with pytest.raises(PayloadTooLarge):
        decode_data_url("data:;base64," + "A" * 4000, limit=1000)
    with pytest.raises(InvalidRequest, match="not valid base64"):
        decode_data_url("data:;base64,@@@@", limit=1000)
    with pytest.raises(InvalidRequest, match="Malformed data URL"):
        decode_data_url("data:no-comma", limit=1000)


# -- multipart upload body --------------------------------------------------------------


def test_multipart_body_streams_with_exact_length():
    payload = b"0123456789" * 10_000
    body = MultipartFile(io.BytesIO(payload), len(payload), 'we"ird\nname.txt', "text/plain")
    pieces = []
    while True:
        piece = body.read(4096)
        if not piece:
            break
        assert len(piece) <= 4096
        pieces.append(piece)
    whole = b"".join(pieces)
    assert len(whole) == len(body)
    assert whole.startswith(f"--{body.boundary}\r\n".encode())
    assert b'filename="we\'irdname.txt"' in whole
    assert payload in whole and whole.endswith(f"\r\n--{body.boundary}--\r\n".encode())


# -- first frames -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "size, expected",
    [
        ((1440, 960), (960, 0, 960)),
        ((720, 480), (960, 0, 960)),
        ((1000, 1000), (1440, 240, 960)),
        ((1920, 1080), (810, 0, 810)),
        ((300, 900), (4320, 1680, 960)),
    ],
)
def test_frame_geometry(size, expected):
    assert frame_geometry(*size) == expected


@pytest.mark.parametrize("fmt, alpha", [("PNG", True), ("JPEG", False), ("WEBP", True)])
def test_prepare_frame_outputs_1440_wide_jpeg(fmt, alpha):
    with spool([image_bytes(fmt, (400, 500), alpha=alpha)], limit=10**7, source="x") as blob:
        out = prepare_frame(blob)
    with Image.open(io.BytesIO(out)) as image:
        assert image.format == "JPEG" and image.size == (1440, 960)
        pixel = image.getpixel((5, 950))
    if alpha:  # semi-transparent red over white, not over black
        assert min(pixel) > 100 and pixel[0] > 220
    else:
        assert pixel[0] > 180 and pixel[1] < 80


FRAME_UNDER_MEMORY_CAP = """
import io, resource, sys
from PIL import Image
from glm_proxy.attachments.blob import from_bytes
from glm_proxy.attachments.frames import prepare_frame

resource.setrlimit(resource.RLIMIT_AS, (1024**3, 1024**3))
buf = io.BytesIO()
Image.new("RGB", (10, 10000), (200, 10, 10)).save(buf, "PNG")
out = prepare_frame(from_bytes(buf.getvalue(), source="tall.png"))
print(Image.open(io.BytesIO(out)).size)
"""


def test_a_tiny_very_tall_image_is_framed_in_bounded_memory():
    """A 10x10000 PNG is a few hundred bytes; scaling it to width 1440 before cropping meant
    a 1440x1,440,000 intermediate (about 8 GB). Under a 1 GiB address-space cap the frame
    must still come out (the crop is taken from the source, then resized)."""
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run(
        [sys.executable, "-c", FRAME_UNDER_MEMORY_CAP],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "(1440, 960)"


def test_prepare_frame_keeps_the_centre_of_a_very_tall_image():
    """Red top half, blue bottom half: the centre crop straddles the boundary."""
    image = Image.new("RGB", (20, 6000), (255, 0, 0))
    image.paste(Image.new("RGB", (20, 3000), (0, 0, 255)), (0, 3000))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    with spool([buf.getvalue()], limit=10**7, source="x") as blob:
        out = prepare_frame(blob)
    with Image.open(io.BytesIO(out)) as frame:
        assert frame.size == (1440, 960)
        top, bottom = frame.getpixel((720, 5)), frame.getpixel((720, 955))
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_prepare_frame_rejects_non_images():
    blob = spool([pdf_bytes()], limit=10**7, source="http://h/x.pdf")
    with blob, pytest.raises(InvalidRequest, match="not an image"):
        prepare_frame(blob)


# -- prompt shapes -----------------------------------------------------------------------


def test_every_attachment_shape_is_collected():
    b64 = base64.b64encode(b"hi").decode()
    prompt = build_prompt(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "file", "file_url": {"url": "http://h/a.pdf"}},
                    {"type": "image_url", "image_url": {"url": "http://h/b.png"}},
                    {"type": "image_url", "image_url": "http://h/c.png"},
                    {
                        "type": "file",
                        "file": {"file_data": f"data:text/plain;base64,{b64}", "filename": "d"},
                    },
                    {"type": "file", "file": {"file_data": b64, "filename": "e.txt"}},
                    {"type": "input_file", "file_url": "http://h/f.pdf"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": b64},
                    },
                    {"type": "document", "source": {"type": "url", "url": "http://h/g.pdf"}},
                ],
            }
        ]
    )
    urls = [a.url for a in prompt.attachments]
    assert urls == [
        "http://h/a.pdf",
        "http://h/b.png",
        "http://h/c.png",
        f"data:text/plain;base64,{b64}",
        f"data:application/octet-stream;base64,{b64}",
        "http://h/f.pdf",
        f"data:image/png;base64,{b64}",
        "http://h/g.pdf",
    ]
    assert [a.filename for a in prompt.attachments][3:5] == ["d", "e.txt"]
