/* Fused CPU codec behind replab.edge.compression (built and loaded through ctypes by replab.kernels.cpu_codec).

   Per-tensor b-bit min-max quantisation, b in {2, 4, 8}, 8/b codes per byte, code j of a byte at bits
   [j*b, (j+1)*b). One pass each: the range (min, max, all finite), quantise + pack, unpack + dequantise.
   Single thread; contiguous float32 / uint8 buffers.

   The arithmetic is the torch reference's, in float32, one rounding per operation (build with
   -ffp-contract=off and without -ffast-math), so the bytes and the values are the reference's bit for bit:
     pack:   code = clamp(floor((x - minimum) * inv_step + 0.5), 0, 2^b - 1)
     unpack: x    = (float)code * step + minimum
   floor-then-clamp is computed as trunc(clamp(t, 0, 2^b - 1)): the same integer for every t that is not NaN
   (for t >= 0 floor and trunc agree; below 0 both give 0 after the clamp), and the float-to-int conversion
   only ever sees values in [0, 2^b - 1]. The clamp is done on the float's bits as a signed integer: a
   non-negative float orders as its bits do, and a negative one has negative bits, so max(bits, 0) and
   min(bits, bits(2^b - 1)) are the float clamp exactly (NaN: 0 or 2^b - 1 by its sign), and they compile to
   single integer min/max instructions where a float select would not (without -ffast-math).

   Codes go through a small block buffer, one byte per code, so every loop is contiguous and vectorises
   (no strided loads or stores): the codes of one output byte are the bytes of one little-endian word of the
   buffer, and a few shifts and ORs of that word give the packed byte (and, unpacking, the reverse). */

#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the block buffers assume a little-endian machine"
#endif

#define CODEC_ABI 1
#define BLOCK 512 /* values per block (a multiple of 4) */
#define INLINE static inline __attribute__((always_inline))

int replab_codec_abi(void) { return CODEC_ABI; }

/* ---- range ------------------------------------------------------------------------------------------- */

/* min and max of x[0..n) into *lo, *hi; returns 1 when every value is finite, 0 otherwise (lo and hi then
   mean nothing). n must be >= 1.

   Integer reductions over the bits (they vectorise without -ffast-math; float ones do not): the largest
   signed value is the largest positive float when there is one, the largest unsigned value is the most
   negative float when there is one, the smallest unsigned value is the smallest positive float, or, when all
   are negative, the largest float. A value is not finite when its magnitude bits reach the exponent's. */
int replab_codec_range(const void *restrict data, int64_t n, float *lo, float *hi) {
    const uint32_t *restrict u = (const uint32_t *)data;
    int32_t smax = INT32_MIN;
    uint32_t umax = 0, umin = UINT32_MAX, amax = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t b = u[i], a = b & 0x7fffffffu;
        smax = (int32_t)b > smax ? (int32_t)b : smax;
        umax = b > umax ? b : umax;
        umin = b < umin ? b : umin;
        amax = a > amax ? a : amax;
    }
    uint32_t bmin = (umax >> 31) ? umax : umin; /* a negative value: the largest magnitude among them */
    uint32_t bmax = smax >= 0 ? (uint32_t)smax : umin; /* all negative: the smallest magnitude */
    memcpy(lo, &bmin, sizeof bmin);
    memcpy(hi, &bmax, sizeof bmax);
    return amax < 0x7f800000u;
}

/* ---- quantise + pack --------------------------------------------------------------------------------- */

INLINE uint8_t quantise(float v, float minimum, float inv_step, int32_t top_bits) {
    float t = (v - minimum) * inv_step + 0.5f;
    int32_t b;
    memcpy(&b, &t, sizeof b);
    b = b > 0 ? b : 0;
    b = b < top_bits ? b : top_bits;
    memcpy(&t, &b, sizeof t);
    return (uint8_t)(int32_t)t;
}

INLINE int32_t bits_of(float f) {
    int32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

INLINE void quantise_block(const float *restrict x, int count, float minimum, float inv_step, int32_t top_bits,
                           uint8_t *restrict code) {
    for (int k = 0; k < count; k++) code[k] = quantise(x[k], minimum, inv_step, top_bits);
}

static void pack2(const float *restrict x, int64_t n, float minimum, float inv_step, uint8_t *restrict out) {
    const int32_t top = bits_of(3.0f);
    uint32_t w[BLOCK / 4]; /* code k in byte k: word m holds the four codes of output byte m */
    for (int64_t i = 0; i < n; i += BLOCK) {
        int count = n - i < BLOCK ? (int)(n - i) : BLOCK, bytes = (count + 3) / 4;
        w[bytes - 1] = 0; /* the codes past the end are 0 */
        quantise_block(x + i, count, minimum, inv_step, top, (uint8_t *)w);
        uint8_t *restrict o = out + i / 4;
        for (int m = 0; m < bytes; m++) o[m] = (uint8_t)(w[m] | w[m] >> 6 | w[m] >> 12 | w[m] >> 18);
    }
}

static void pack4(const float *restrict x, int64_t n, float minimum, float inv_step, uint8_t *restrict out) {
    const int32_t top = bits_of(15.0f);
    uint16_t w[BLOCK / 2];
    for (int64_t i = 0; i < n; i += BLOCK) {
        int count = n - i < BLOCK ? (int)(n - i) : BLOCK, bytes = (count + 1) / 2;
        w[bytes - 1] = 0;
        quantise_block(x + i, count, minimum, inv_step, top, (uint8_t *)w);
        uint8_t *restrict o = out + i / 2;
        for (int m = 0; m < bytes; m++) o[m] = (uint8_t)(w[m] | w[m] >> 4);
    }
}

static void pack8(const float *restrict x, int64_t n, float minimum, float inv_step, uint8_t *restrict out) {
    const int32_t top = bits_of(255.0f);
    for (int64_t i = 0; i < n; i++) out[i] = quantise(x[i], minimum, inv_step, top);
}

/* Writes ceil(n * bits / 8) bytes to out. Returns 0, or -1 for an unsupported bit width. */
int replab_codec_pack(const float *restrict x, int64_t n, int bits, float minimum, float inv_step,
                      uint8_t *restrict out) {
    switch (bits) {
    case 2: pack2(x, n, minimum, inv_step, out); return 0;
    case 4: pack4(x, n, minimum, inv_step, out); return 0;
    case 8: pack8(x, n, minimum, inv_step, out); return 0;
    default: return -1;
    }
}

/* ---- unpack + dequantise ----------------------------------------------------------------------------- */

INLINE void dequantise_block(const uint8_t *restrict code, int64_t count, float minimum, float step,
                             float *restrict out) {
    for (int64_t k = 0; k < count; k++) out[k] = (float)(int32_t)code[k] * step + minimum;
}

static void unpack2(const uint8_t *restrict p, int64_t n, float minimum, float step, float *restrict out) {
    uint32_t w[BLOCK / 4];
    for (int64_t i = 0; i < n; i += BLOCK) {
        int count = n - i < BLOCK ? (int)(n - i) : BLOCK, bytes = (count + 3) / 4;
        const uint8_t *restrict q = p + i / 4;
        for (int m = 0; m < bytes; m++) {
            uint32_t b = q[m];
            w[m] = (b | b << 6 | b << 12 | b << 18) & 0x03030303u;
        }
        dequantise_block((const uint8_t *)w, count, minimum, step, out + i);
    }
}

static void unpack4(const uint8_t *restrict p, int64_t n, float minimum, float step, float *restrict out) {
    uint16_t w[BLOCK / 2];
    for (int64_t i = 0; i < n; i += BLOCK) {
        int count = n - i < BLOCK ? (int)(n - i) : BLOCK, bytes = (count + 1) / 2;
        const uint8_t *restrict q = p + i / 2;
        for (int m = 0; m < bytes; m++) {
            uint32_t b = q[m];
            w[m] = (uint16_t)((b | b << 4) & 0x0f0fu);
        }
        dequantise_block((const uint8_t *)w, count, minimum, step, out + i);
    }
}

/* Reads ceil(n * bits / 8) bytes, writes n floats. Returns 0, or -1 for an unsupported bit width. */
int replab_codec_unpack(const uint8_t *restrict p, int64_t n, int bits, float minimum, float step,
                        float *restrict out) {
    switch (bits) {
    case 2: unpack2(p, n, minimum, step, out); return 0;
    case 4: unpack4(p, n, minimum, step, out); return 0;
    case 8: dequantise_block(p, n, minimum, step, out); return 0;
    default: return -1;
    }
}
