#!/usr/bin/env python3
"""Seeds the fuzz corpora from real logs: python3 fuzz/seeds.py LOG...

corpus/analyze: each log cut to 64 KiB with its reserved_end set to match,
                plus truncated copies (cut inside a chunk and inside the header)
corpus/records: each log's chunk bodies (trailing zeros dropped) joined by
                0xFE 0xFE after a selector byte, the input of the `records` target
"""
import os, struct, sys, hashlib

HERE = os.path.dirname(os.path.abspath(__file__))
MAX = 65536

def put(target, data):
    d = os.path.join(HERE, 'corpus', target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)

for path in sys.argv[1:]:
    b = open(path, 'rb').read()
    if len(b) < 4096 or b[:8] != b'MEMTRACE':
        continue
    end = min(struct.unpack_from('<Q', b, 48)[0], len(b))
    # Whole chunks that fit in MAX bytes.
    pos, keep, bodies = 4096, 4096, []
    while pos + 32 <= end:
        magic, size = struct.unpack_from('<II', b, pos)
        if magic == 0:
            pos += 4096
            continue
        if size < 4096 or size % 4096:
            break
        body = b[pos + 32:min(pos + size, end)].rstrip(b'\0')
        bodies.append((struct.unpack_from('<I', b, pos + 8)[0], body))
        if pos + size <= MAX:
            keep = pos + size
        pos += size
    seed = bytearray(b[:keep])
    struct.pack_into('<Q', seed, 48, keep)
    put('analyze', bytes(seed))
    if keep > 8192:
        put('analyze', bytes(seed[:keep - 2000]))  # truncated inside a chunk
    put('analyze', bytes(seed[:300]))  # truncated inside the header
    streams = sorted({s for s, _ in bodies})
    sel = (len(streams) - 1) & 3 | 4
    rec = bytes([sel]) + b'\xfe\xfe'.join(body for _, body in bodies)
    put('records', rec[:MAX])
