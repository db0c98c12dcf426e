"""Write a copy of a plugin with a custom section appended: the same
handler under another version digest (for the reload and start-up benches).

    python3 scripts/plugin_variant.py SRC OUT TAG
"""
import sys


def leb128(value):
    out = b""
    while True:
        byte, value = value & 0x7F, value >> 7
        if value:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def variant(src_bytes, tag):
    body = leb128(7) + b"variant" + tag.encode()
    return src_bytes + b"\x00" + leb128(len(body)) + body


if __name__ == "__main__":
    src, out, tag = sys.argv[1:4]
    with open(src, "rb") as f:
        data = variant(f.read(), tag)
    with open(out, "wb") as f:
        f.write(data)
