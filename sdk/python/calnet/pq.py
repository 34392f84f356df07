"""Signature verification for calnet in pure Python (standard library only).

Ed25519ctx (RFC 8032) and ML-DSA-65 (FIPS 204) verification, enough to
check calnet's hybrid signatures offline. Verification handles only public
data, so constant time does not matter here; never use this code to sign.
"""

import hashlib

# ---------------------------------------------------------------- Ed25519ctx
_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_I = pow(2, (_P - 1) // 4, _P)


def _xrecover(y, sign):
    xx = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    x = pow(xx, (_P + 3) // 8, _P)
    if (x * x - xx) % _P != 0:
        x = x * _I % _P
    if (x * x - xx) % _P != 0:
        return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return x


def _decode_point(b):
    if len(b) != 32:
        return None
    y = int.from_bytes(b, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= _P:
        return None
    x = _xrecover(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % _P)


def _add(p, q):
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = 2 * t1 * t2 * _D % _P
    d = 2 * z1 * z2 % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _mul(s, p):
    q = (0, 1, 1, 0)
    while s > 0:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _eq(p, q):
    return (p[0] * q[2] - q[0] * p[2]) % _P == 0 and (p[1] * q[2] - q[1] * p[2]) % _P == 0


_BY = 4 * pow(5, _P - 2, _P) % _P
_B = (_xrecover(_BY, 0), _BY, 1, _xrecover(_BY, 0) * _BY % _P)


def ed25519ctx_verify(public, msg, sig, context):
    """RFC 8032 Ed25519ctx verification (pure Ed25519 when context is None)."""
    if len(public) != 32 or len(sig) != 64:
        return False
    a = _decode_point(public)
    r = _decode_point(sig[:32])
    s = int.from_bytes(sig[32:], "little")
    if a is None or r is None or s >= _L:
        return False
    dom = b""
    if context is not None:
        if len(context) > 255:
            return False
        dom = b"SigEd25519 no Ed25519 collisions" + bytes([0, len(context)]) + context
    h = int.from_bytes(hashlib.sha512(dom + sig[:32] + public + msg).digest(), "little") % _L
    return _eq(_mul(s, _B), _add(r, _mul(h, a)))


# ----------------------------------------------------------------- ML-DSA-65
_Q = 8380417
_N = 256
_DBITS = 13
_TAU = 49
_GAMMA1 = 1 << 19
_GAMMA2 = (_Q - 1) // 32
_K, _LL = 6, 5
_BETA = 196
_OMEGA = 55
_CT = 48  # lambda/4 bytes of c_tilde


def _brv8(m):
    return int(f"{m:08b}"[::-1], 2)


_ZETAS = [pow(1753, _brv8(m), _Q) for m in range(256)]


def _ntt(w):
    w = list(w)
    m, ln = 0, 128
    while ln >= 1:
        start = 0
        while start < 256:
            m += 1
            z = _ZETAS[m]
            for j in range(start, start + ln):
                t = z * w[j + ln] % _Q
                w[j + ln] = (w[j] - t) % _Q
                w[j] = (w[j] + t) % _Q
            start += 2 * ln
        ln //= 2
    return w


def _intt(w):
    w = list(w)
    m, ln = 256, 1
    while ln < 256:
        start = 0
        while start < 256:
            m -= 1
            z = -_ZETAS[m]
            for j in range(start, start + ln):
                t = w[j]
                w[j] = (t + w[j + ln]) % _Q
                w[j + ln] = z * (t - w[j + ln]) % _Q
            start += 2 * ln
        ln *= 2
    f = 8347681
    return [f * x % _Q for x in w]


def _rej_ntt_poly(seed):
    stream = hashlib.shake_128(seed).digest(1024)
    out, pos = [], 0
    while len(out) < 256:
        if pos + 3 > len(stream):
            stream = hashlib.shake_128(seed).digest(len(stream) * 2)
        b0, b1, b2 = stream[pos], stream[pos + 1], stream[pos + 2]
        pos += 3
        v = b0 | (b1 << 8) | ((b2 & 0x7F) << 16)
        if v < _Q:
            out.append(v)
    return out


def _sample_in_ball(seed):
    stream = hashlib.shake_256(seed).digest(8 + 512)
    signs = int.from_bytes(stream[:8], "little")
    c = [0] * 256
    pos = 8
    for i in range(256 - _TAU, 256):
        while True:
            if pos >= len(stream):
                stream = hashlib.shake_256(seed).digest(len(stream) * 2)
            j = stream[pos]
            pos += 1
            if j <= i:
                break
        c[i] = c[j]
        c[j] = -1 if (signs >> (i + _TAU - 256)) & 1 else 1
    return c


def _unpack_bits(b, bits):
    v = int.from_bytes(b, "little")
    mask = (1 << bits) - 1
    return [(v >> (bits * i)) & mask for i in range(256)]


def _use_hint(h, r):
    m = (_Q - 1) // (2 * _GAMMA2)
    r %= _Q
    r0 = r % (2 * _GAMMA2)
    if r0 > _GAMMA2:
        r0 -= 2 * _GAMMA2
    if r - r0 == _Q - 1:
        r1, r0 = 0, r0 - 1
    else:
        r1 = (r - r0) // (2 * _GAMMA2)
    if h == 1:
        return (r1 + 1) % m if r0 > 0 else (r1 - 1) % m
    return r1


def mldsa65_verify(public, msg, sig, context=b""):
    """FIPS 204 ML-DSA-65 verification (pure, with a context string)."""
    if len(public) != 1952 or len(sig) != 3309 or len(context) > 255:
        return False
    rho = public[:32]
    t1 = [_unpack_bits(public[32 + 320 * i: 32 + 320 * (i + 1)], 10) for i in range(_K)]
    c_tilde = sig[:_CT]
    z = []
    for i in range(_LL):
        raw = _unpack_bits(sig[_CT + 640 * i: _CT + 640 * (i + 1)], 20)
        z.append([_GAMMA1 - x for x in raw])
    y = sig[_CT + 640 * _LL:]
    h = [[0] * 256 for _ in range(_K)]
    idx = 0
    for i in range(_K):
        if y[_OMEGA + i] < idx or y[_OMEGA + i] > _OMEGA:
            return False
        first = idx
        while idx < y[_OMEGA + i]:
            if idx > first and y[idx - 1] >= y[idx]:
                return False
            h[i][y[idx]] = 1
            idx += 1
    if any(y[i] != 0 for i in range(idx, _OMEGA)):
        return False
    if max(abs(c) for poly in z for c in poly) >= _GAMMA1 - _BETA:
        return False
    mprime = bytes([0, len(context)]) + context + msg
    tr = hashlib.shake_256(public).digest(64)
    mu = hashlib.shake_256(tr + mprime).digest(64)
    c_hat = _ntt([x % _Q for x in _sample_in_ball(c_tilde)])
    z_hat = [_ntt([x % _Q for x in poly]) for poly in z]
    w1 = b""
    enc_bits = 0
    acc = 0
    packed = bytearray()
    for i in range(_K):
        row = [0] * 256
        for j in range(_LL):
            a = _rej_ntt_poly(rho + bytes([j, i]))
            zj = z_hat[j]
            for t in range(256):
                row[t] += a[t] * zj[t]
        t1_hat = _ntt([x * (1 << _DBITS) % _Q for x in t1[i]])
        w = _intt([(row[t] - c_hat[t] * t1_hat[t]) % _Q for t in range(256)])
        for t in range(256):
            acc |= _use_hint(h[i][t], w[t]) << enc_bits
            enc_bits += 4
            while enc_bits >= 8:
                packed.append(acc & 0xFF)
                acc >>= 8
                enc_bits -= 8
    w1 = bytes(packed)
    return hashlib.shake_256(mu + w1).digest(_CT) == c_tilde
