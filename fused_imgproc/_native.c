/* fused_imgproc._native: Pillow's 8-bit resampling on the CPU, exact, for the window a crop keeps.
 *
 * One call resizes one band of one image: the output rows [y0, y1) and columns [x0, x1) of the resized image,
 * through Pillow's two passes in the order Pillow uses (fused_imgproc/resample.py `passes`), computing in the first
 * pass only what the second pass reads. Each output value is Pillow's `normalize_coeffs_8bpc` arithmetic:
 *
 *     out = clip((2**21 + sum_k coef[k] * in[first + k]) >> 22, 0, 255)      (32-bit int, as Pillow's `int ss`)
 *
 * so a value does not depend on which other values are computed, or in which order the integer sum is added up
 * (the total fits int32 for Pillow's coefficients, |sum| <= 255 * sum |coef| < 2**31, and partial sums that
 * wrap at 32 bits still give it exactly). The coefficient tables are fused_imgproc.resample.axis_coefficients',
 * the same the GPU resize executes.
 *
 * The result is written through an optional value table: out[c, y, x] = table[c, value] (`itemsize` bytes each),
 * which is the numpy backend's rescale + normalize + cast, fused into the last pass; without a table the uint8
 * values themselves are written. The caller splits an image into bands and runs them on its threads: the GIL is
 * released while a band runs.
 *
 * x86-64 gets SSE4.1 (one RGB pixel per vector: 3 channels + 1 spare lane) and AVX2 (two rows at a time, four taps
 * per step in 16-bit multiplies of a split coefficient: hrow_avx2_rows) versions of the horizontal pass and an
 * AVX2 build of the vertical pass, chosen at import from the CPU (`kernels()`, `use()`); other CPUs run portable C.
 * Every version gives the same bits.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define FI_X86 1
#include <immintrin.h>
#endif

#define PRECISION_BITS 22
#define HALF (1 << (PRECISION_BITS - 1))
#define VCHUNK 2048               /* int32 accumulators of the vertical pass: 8 KiB, in L1 */
#define SCRATCH_KEEP (16u << 20)  /* a thread keeps at most this much scratch memory between calls */

typedef struct {
    const int32_t *first, *count, *coef;
    Py_ssize_t in_size, out_size;
    int ksize;
} Axis;

static inline uint8_t clip8(int32_t s) {
    s >>= PRECISION_BITS; /* arithmetic shift, as Pillow's clip8 */
    return (uint8_t)(s < 0 ? 0 : (s > 255 ? 255 : s));
}

/* ---- the vertical pass: one output row from rows first..first+count-1 of `base` ------------------------------- */

/* out[x] = clip(HALF + sum_t coef[t] * base[(first + t) * stride + x]) for x < len; `acc` holds VCHUNK int32. */
static inline __attribute__((always_inline)) void vrow_body(const uint8_t *base, Py_ssize_t stride,
                                                            const int32_t *k, Py_ssize_t first, int n, Py_ssize_t len,
                                                            uint8_t *restrict out, int32_t *restrict acc) {
    for (Py_ssize_t x0 = 0; x0 < len; x0 += VCHUNK) {
        Py_ssize_t m = len - x0 < VCHUNK ? len - x0 : VCHUNK;
        for (Py_ssize_t x = 0; x < m; x++) acc[x] = HALF;
        int t = 0;
        for (; t + 1 < n; t += 2) { /* two rows per sweep of the accumulators */
            const uint8_t *restrict r0 = base + (first + t) * stride + x0;
            const uint8_t *restrict r1 = r0 + stride;
            int32_t k0 = k[t], k1 = k[t + 1];
            for (Py_ssize_t x = 0; x < m; x++) acc[x] += r0[x] * k0 + r1[x] * k1;
        }
        if (t < n) {
            const uint8_t *restrict r0 = base + (first + t) * stride + x0;
            int32_t k0 = k[t];
            for (Py_ssize_t x = 0; x < m; x++) acc[x] += r0[x] * k0;
        }
        for (Py_ssize_t x = 0; x < m; x++) out[x0 + x] = clip8(acc[x]);
    }
}

typedef void (*vrow_fn)(const uint8_t *, Py_ssize_t, const int32_t *, Py_ssize_t, int, Py_ssize_t, uint8_t *,
                        int32_t *);

static void vrow_portable(const uint8_t *base, Py_ssize_t stride, const int32_t *k, Py_ssize_t first, int n,
                          Py_ssize_t len, uint8_t *out, int32_t *acc) {
    vrow_body(base, stride, k, first, n, len, out, acc);
}

#ifdef FI_X86
__attribute__((target("avx2"))) static void vrow_avx2(const uint8_t *base, Py_ssize_t stride, const int32_t *k,
                                                      Py_ssize_t first, int n, Py_ssize_t len, uint8_t *out,
                                                      int32_t *acc) {
    vrow_body(base, stride, k, first, n, len, out, acc);
}
#endif

/* ---- the horizontal pass: output columns [j0, j1) of one row of `w` pixels --------------------------------------- */
/* `shift` is the column of `row[0]` in the axis' input (the band's first source column); out is packed. */

static void hrow_portable(const uint8_t *row, Py_ssize_t w, Py_ssize_t shift, int channels, const Axis *a,
                          Py_ssize_t j0, Py_ssize_t j1, uint8_t *out) {
    (void)w;
    for (Py_ssize_t j = j0; j < j1; j++) {
        const int32_t *k = a->coef + j * a->ksize;
        const uint8_t *p = row + (a->first[j] - shift) * channels;
        int n = a->count[j];
        for (int c = 0; c < channels; c++) {
            int32_t s = HALF;
            for (int t = 0; t < n; t++) s += p[t * channels + c] * k[t];
            *out++ = clip8(s);
        }
    }
}

#ifdef FI_X86
/* 3 channels: the pixel's 3 bytes (and the next pixel's first, a spare lane) as 4 int32 lanes. The 4-byte load of
 * the row's last pixel would read past it, so that one pixel is assembled from its 3 bytes. */
__attribute__((target("sse4.1"))) static inline __attribute__((always_inline)) __m128i rgb_lanes(const uint8_t *p, int last) {
    uint32_t v;
    if (last) {
        v = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16);
    } else {
        memcpy(&v, p, 4);
    }
    return _mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)v));
}

__attribute__((target("sse4.1"))) static inline __attribute__((always_inline)) void store_rgb(uint8_t *out, __m128i acc) {
    __m128i v = _mm_srai_epi32(acc, PRECISION_BITS);
    v = _mm_packus_epi16(_mm_packs_epi32(v, v), v); /* saturating: clip to [0, 255] */
    uint32_t bytes = (uint32_t)_mm_cvtsi128_si32(v);
    out[0] = (uint8_t)bytes;
    out[1] = (uint8_t)(bytes >> 8);
    out[2] = (uint8_t)(bytes >> 16);
}

__attribute__((target("sse4.1"))) static void hrow_sse41(const uint8_t *row, Py_ssize_t w, Py_ssize_t shift,
                                                         int channels, const Axis *a, Py_ssize_t j0, Py_ssize_t j1,
                                                         uint8_t *out) {
    if (channels == 3) {
        for (Py_ssize_t j = j0; j < j1; j++, out += 3) {
            const int32_t *k = a->coef + j * a->ksize;
            Py_ssize_t f = a->first[j] - shift;
            const uint8_t *p = row + f * 3;
            int n = a->count[j], safe = f + n == w ? n - 1 : n;
            __m128i acc = _mm_set1_epi32(HALF);
            int t = 0;
            for (; t < safe; t++) acc = _mm_add_epi32(acc, _mm_mullo_epi32(rgb_lanes(p + 3 * t, 0), _mm_set1_epi32(k[t])));
            for (; t < n; t++) acc = _mm_add_epi32(acc, _mm_mullo_epi32(rgb_lanes(p + 3 * t, 1), _mm_set1_epi32(k[t])));
            store_rgb(out, acc);
        }
    } else if (channels == 1) {
        for (Py_ssize_t j = j0; j < j1; j++) {
            const int32_t *k = a->coef + j * a->ksize;
            const uint8_t *p = row + (a->first[j] - shift);
            int n = a->count[j], t = 0;
            __m128i acc = _mm_setzero_si128();
            for (; t + 4 <= n; t += 4) {
                uint32_t v;
                memcpy(&v, p + t, 4);
                __m128i px = _mm_cvtepu8_epi32(_mm_cvtsi32_si128((int)v));
                acc = _mm_add_epi32(acc, _mm_mullo_epi32(px, _mm_loadu_si128((const __m128i *)(k + t))));
            }
            acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, _MM_SHUFFLE(1, 0, 3, 2)));
            acc = _mm_add_epi32(acc, _mm_shuffle_epi32(acc, _MM_SHUFFLE(2, 3, 0, 1)));
            int32_t s = HALF + _mm_cvtsi128_si32(acc);
            for (; t < n; t++) s += p[t] * k[t];
            *out++ = clip8(s);
        }
    } else {
        hrow_portable(row, w, shift, channels, a, j0, j1, out);
    }
}

/* 3 channels, two taps per step: 8 bytes from pixel t spread to lanes (R G B - R G B -) of pixels t and t + 1. */
__attribute__((target("avx2"))) static void hrow_avx2_one(const uint8_t *row, Py_ssize_t w, Py_ssize_t shift,
                                                          int channels, const Axis *a, Py_ssize_t j0, Py_ssize_t j1,
                                                          uint8_t *out) {
    if (channels != 3) {
        hrow_sse41(row, w, shift, channels, a, j0, j1, out);
        return;
    }
    const __m128i spread = _mm_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i pairs = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    for (Py_ssize_t j = j0; j < j1; j++, out += 3) {
        const int32_t *k = a->coef + j * a->ksize;
        Py_ssize_t f = a->first[j] - shift;
        const uint8_t *p = row + f * 3;
        int n = a->count[j];
        /* an 8-byte load at pixel t stays in the row while pixel t + 2 exists (t + 2 < w - f, i.e. 3t + 8 <= 3(w - f)) */
        Py_ssize_t room = w - f - 2;
        int pairs_end = (int)(room < n - 1 ? room : n - 1);
        __m256i acc2 = _mm256_setzero_si256();
        int t = 0;
        for (; t < pairs_end; t += 2) {
            __m128i bytes = _mm_shuffle_epi8(_mm_loadl_epi64((const __m128i *)(p + 3 * t)), spread);
            __m256i coef = _mm256_permutevar8x32_epi32(_mm256_castsi128_si256(_mm_loadl_epi64((const __m128i *)(k + t))),
                                                       pairs);
            acc2 = _mm256_add_epi32(acc2, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(bytes), coef));
        }
        __m128i acc = _mm_add_epi32(_mm_set1_epi32(HALF),
                                    _mm_add_epi32(_mm256_castsi256_si128(acc2), _mm256_extracti128_si256(acc2, 1)));
        for (; t < n; t++) acc = _mm_add_epi32(acc, _mm_mullo_epi32(rgb_lanes(p + 3 * t, f + t + 1 == w), _mm_set1_epi32(k[t])));
        store_rgb(out, acc);
    }
}
#endif

/* The horizontal pass over `nrows` rows: row r at src + r * src_stride, its outputs at out + r * out_stride.
 * `pd` is the band's padded table (pad_axis). */
typedef struct {
    const int32_t *first, *coef; /* first[j - j0], coef[(j - j0) * K + t]: K taps each, zeros around the real ones */
    int K;
    const int16_t *vec; /* for hrow_avx2_rows, or NULL (expand_avx2) */
} Padded;

typedef void (*hrows_fn)(const uint8_t *, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, int, const Axis *,
                         const Padded *, Py_ssize_t, Py_ssize_t, uint8_t *, Py_ssize_t);

#define ROWS_OF(one)                                                                                                   \
    static void one##_rows(const uint8_t *src, Py_ssize_t src_stride, Py_ssize_t nrows, Py_ssize_t w,                \
                           Py_ssize_t shift, int channels, const Axis *a, const Padded *pd, Py_ssize_t j0,           \
                           Py_ssize_t j1, uint8_t *out, Py_ssize_t out_stride) {                                      \
        (void)pd;                                                                                                      \
        for (Py_ssize_t r = 0; r < nrows; r++)                                                                         \
            one(src + r * src_stride, w, shift, channels, a, j0, j1, out + r * out_stride);                           \
    }
ROWS_OF(hrow_portable)
#ifdef FI_X86
ROWS_OF(hrow_sse41)

/* RGB with the padded table, four taps per step, in 16-bit multiplies: each coefficient is split as
 * c = hi * 2**11 + lo (0 <= lo < 2**11, |hi| < 2**12), so pixel * c = (pixel * hi) << 11 + pixel * lo, and
 * vpmaddwd sums two taps' 16-bit products per lane. Every lane wraps at 32 bits, so the total equals the int32 sum
 * of the other kernels (which does not overflow) whatever the order. Lanes: (R0 R1 G0 G1 B0 B1 - -) of taps t, t+1
 * in the low half, t+2, t+3 in the high half; `pd->vec` holds the matching (lo, hi) coefficient vectors of each
 * group of four taps. Every output has K taps (the same loop for all: no unpredictable exits); two rows share
 * the coefficients. An output whose last 16-byte load would pass the row's end takes hrow_avx2_one. */
__attribute__((target("avx2"))) static void hrow_avx2_rows(const uint8_t *src, Py_ssize_t src_stride, Py_ssize_t nrows,
                                                           Py_ssize_t w, Py_ssize_t shift, int channels, const Axis *a,
                                                           const Padded *pd, Py_ssize_t j0, Py_ssize_t j1, uint8_t *out,
                                                           Py_ssize_t out_stride) {
    if (channels != 3 || pd->vec == NULL) {
        if (channels == 3) {
            for (Py_ssize_t r = 0; r < nrows; r++)
                hrow_avx2_one(src + r * src_stride, w, shift, 3, a, j0, j1, out + r * out_stride);
        } else {
            hrow_sse41_rows(src, src_stride, nrows, w, shift, channels, a, pd, j0, j1, out, out_stride);
        }
        return;
    }
    const __m256i spread = _mm256_setr_epi8(0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1,  /* taps t, t+1 */
                                            6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1, -1); /* t+2, t+3 */
    const __m128i half = _mm_set1_epi32(HALF);
    const int K = pd->K, groups = K / 4;
    for (Py_ssize_t r = 0; r < nrows; r += 2) {
        const int two = r + 1 < nrows;
        const uint8_t *s0 = src + r * src_stride, *s1 = two ? s0 + src_stride : s0;
        uint8_t *o0 = out + r * out_stride, *o1 = o0 + out_stride;
        for (Py_ssize_t j = j0; j < j1; j++, o0 += 3, o1 += 3) {
            Py_ssize_t f = pd->first[j - j0] - shift;
            if (f + K + 2 > w) { /* the row's end: the exact-length loads */
                hrow_avx2_one(s0, w, shift, 3, a, j, j + 1, o0);
                if (two) hrow_avx2_one(s1, w, shift, 3, a, j, j + 1, o1);
                continue;
            }
            const __m256i *k = (const __m256i *)pd->vec + (j - j0) * groups * 2;
            const uint8_t *p0 = s0 + f * 3, *p1 = s1 + f * 3;
            __m256i lo0 = _mm256_setzero_si256(), hi0 = lo0, lo1 = lo0, hi1 = lo0;
            for (int g = 0; g < groups; g++, p0 += 12, p1 += 12) {
                __m256i klo = _mm256_load_si256(k + 2 * g), khi = _mm256_load_si256(k + 2 * g + 1);
                __m256i x0 = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p0)), spread);
                __m256i x1 = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p1)), spread);
                lo0 = _mm256_add_epi32(lo0, _mm256_madd_epi16(x0, klo));
                hi0 = _mm256_add_epi32(hi0, _mm256_madd_epi16(x0, khi));
                lo1 = _mm256_add_epi32(lo1, _mm256_madd_epi16(x1, klo));
                hi1 = _mm256_add_epi32(hi1, _mm256_madd_epi16(x1, khi));
            }
            __m256i t0 = _mm256_add_epi32(lo0, _mm256_slli_epi32(hi0, 11));
            __m256i t1 = _mm256_add_epi32(lo1, _mm256_slli_epi32(hi1, 11));
            store_rgb(o0, _mm_add_epi32(half, _mm_add_epi32(_mm256_castsi256_si128(t0), _mm256_extracti128_si256(t0, 1))));
            if (two)
                store_rgb(o1, _mm_add_epi32(half, _mm_add_epi32(_mm256_castsi256_si128(t1), _mm256_extracti128_si256(t1, 1))));
        }
    }
}

/* hrow_avx2_rows' coefficient vectors: per output, per group of four taps, the 16 int16 lanes of `lo` then `hi`. */
static void expand_avx2(const Padded *pd, Py_ssize_t n, int16_t *vec) {
    const int groups = pd->K / 4;
    for (Py_ssize_t j = 0; j < n; j++) {
        const int32_t *c = pd->coef + j * pd->K;
        for (int g = 0; g < groups; g++, vec += 32) {
            memset(vec, 0, 32 * sizeof(int16_t));
            for (int half = 0; half < 2; half++) {
                for (int tap = 0; tap < 2; tap++) {
                    int32_t v = c[4 * g + 2 * half + tap];
                    for (int ch = 0; ch < 3; ch++) {
                        vec[8 * half + 2 * ch + tap] = (int16_t)(v & 2047);    /* lo */
                        vec[16 + 8 * half + 2 * ch + tap] = (int16_t)(v >> 11); /* hi */
                    }
                }
            }
        }
    }
}
#endif

#ifdef FI_X86
/* Pads the table of outputs [j0, j1) to K taps each, K = their largest count rounded up to 4's multiple unless that passes
 * the readable inputs [in_lo, in_hi): each output's window moves left where it would pass in_hi, its coefficients
 * shifted with it, zeros elsewhere. The sums are unchanged (zero terms). */
static void pad_axis(const Axis *a, Py_ssize_t j0, Py_ssize_t j1, Py_ssize_t in_lo, Py_ssize_t in_hi,
                     int32_t *first, int32_t *coef, int K) {
    for (Py_ssize_t j = j0; j < j1; j++) {
        Py_ssize_t f = a->first[j], fp = f < in_hi - K ? f : in_hi - K;
        if (fp < in_lo) fp = in_lo;
        int32_t *c = coef + (j - j0) * K;
        memset(c, 0, (size_t)K * sizeof(int32_t));
        memcpy(c + (f - fp), a->coef + j * a->ksize, (size_t)a->count[j] * sizeof(int32_t));
        first[j - j0] = (int32_t)fp;
    }
}

static int padded_taps(const Axis *a, Py_ssize_t j0, Py_ssize_t j1, Py_ssize_t in_lo, Py_ssize_t in_hi) {
    int K = 1;
    for (Py_ssize_t j = j0; j < j1; j++)
        if (a->count[j] > K) K = a->count[j];
    int K4 = (K + 3) & ~3; /* a multiple of 4 when the readable inputs leave room (hrow_avx2_rows) */
    return K4 <= in_hi - in_lo ? K4 : K;
}
#endif

static vrow_fn vrow = vrow_portable;
static hrows_fn hrows = hrow_portable_rows;
static const char *isa = "portable";

/* ---- one band ------------------------------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *src;
    Py_ssize_t src_h, src_w, src_stride;
    int channels;
    int has_h, has_v, vertical_first;
    Axis h, v;
    Py_ssize_t y0, y1, x0, x1;
    char *dst;
    Py_ssize_t dst_c, dst_y, dst_x; /* byte strides of the output's channel, row and column */
    const char *table;              /* (channels, 256) values of `itemsize` bytes, or NULL: the uint8 values */
    int itemsize;
} Band;

/* Writes one output row's `width` packed pixels through the value table (or as they are). */
static void emit(const Band *b, Py_ssize_t y, const uint8_t *pixels) {
    const int C = b->channels;
    const Py_ssize_t width = b->x1 - b->x0, xs = b->dst_x;
    for (int c = 0; c < C; c++) {
        char *o = b->dst + y * b->dst_y + c * b->dst_c;
        const uint8_t *p = pixels + c;
        if (b->table == NULL) {
            for (Py_ssize_t x = 0; x < width; x++) o[x * xs] = (char)p[x * C];
            continue;
        }
        const char *tab = b->table + (Py_ssize_t)c * 256 * b->itemsize;
        switch (b->itemsize) {
        case 4: {
            const uint32_t *t4 = (const uint32_t *)tab;
            if (xs == 4) {
                uint32_t *o4 = (uint32_t *)o;
                for (Py_ssize_t x = 0; x < width; x++) o4[x] = t4[p[x * C]];
            } else {
                for (Py_ssize_t x = 0; x < width; x++) memcpy(o + x * xs, &t4[p[x * C]], 4);
            }
            break;
        }
        case 2: {
            const uint16_t *t2 = (const uint16_t *)tab;
            for (Py_ssize_t x = 0; x < width; x++) memcpy(o + x * xs, &t2[p[x * C]], 2);
            break;
        }
        case 8: {
            const uint64_t *t8 = (const uint64_t *)tab;
            for (Py_ssize_t x = 0; x < width; x++) memcpy(o + x * xs, &t8[p[x * C]], 8);
            break;
        }
        default:
            for (Py_ssize_t x = 0; x < width; x++) o[x * xs] = tab[p[x * C]];
        }
    }
}

static void input_range(const Axis *a, Py_ssize_t start, Py_ssize_t stop, Py_ssize_t *lo, Py_ssize_t *hi) {
    Py_ssize_t l = a->first[start], h = a->first[start] + a->count[start];
    for (Py_ssize_t j = start + 1; j < stop; j++) {
        if (a->first[j] < l) l = a->first[j];
        if (a->first[j] + a->count[j] > h) h = a->first[j] + a->count[j];
    }
    *lo = l;
    *hi = h;
}

/* Per-thread scratch memory, kept between calls (the pool's threads live long, and fresh pages cost page faults),
 * freed when its thread exits or when it grew past SCRATCH_KEEP. Without POSIX threads: malloc and free per call. */
typedef struct {
    uint8_t *memory;
    size_t size;
} Scratch;

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
static pthread_key_t scratch_key;

static void scratch_free(void *p) {
    Scratch *s = p;
    free(s->memory);
    free(s);
}

static Scratch *scratch_mine(void) {
    Scratch *s = pthread_getspecific(scratch_key);
    if (s == NULL && (s = calloc(1, sizeof(Scratch))) != NULL && pthread_setspecific(scratch_key, s) != 0) {
        free(s);
        s = NULL;
    }
    return s;
}
#define SCRATCH_INIT() (pthread_key_create(&scratch_key, scratch_free) == 0)
#else
static Scratch *scratch_mine(void) { return calloc(1, sizeof(Scratch)); }
#define SCRATCH_INIT() 1
#define SCRATCH_PER_CALL 1
#endif

static uint8_t *scratch_get(Scratch *s, size_t size) {
    if (size > s->size) {
        free(s->memory);
        s->memory = aligned_alloc(64, (size + 63) & ~(size_t)63);
        s->size = s->memory ? size : 0;
    }
    return s->memory;
}

static void scratch_done(Scratch *s) {
#ifdef SCRATCH_PER_CALL
    free(s->memory);
    free(s);
#else
    if (s->size > SCRATCH_KEEP) {
        free(s->memory);
        s->memory = NULL;
        s->size = 0;
    }
#endif
}

/* Runs one band; 0, or -1 when scratch memory could not be had. */
static int run_band(const Band *b) {
    const int C = b->channels;
    const Py_ssize_t width = b->x1 - b->x0, rowbytes = width * C;
    Py_ssize_t lo = 0, hi = 0, mid_w = 0, mid_rows = 0;
    if (b->has_h && b->has_v) {
        if (b->vertical_first) {
            input_range(&b->h, b->x0, b->x1, &lo, &hi);
            mid_w = hi - lo;
            mid_rows = b->y1 - b->y0;
        } else {
            input_range(&b->v, b->y0, b->y1, &lo, &hi);
            mid_w = width;
            mid_rows = hi - lo;
        }
    }
    /* the horizontal pass reads source columns [in_lo, in_hi): the middle image's in vertical-first order */
    Py_ssize_t in_lo = b->has_v && b->vertical_first ? lo : 0;
    /* hrow_avx2_rows' padded table and coefficient vectors (for RGB with a tap count that is a multiple of 4) */
    int K = 0, vectors = 0;
#ifdef FI_X86
    Py_ssize_t in_hi = b->has_v && b->vertical_first ? hi : b->src_w;
    if (b->has_h && C == 3 && hrows == hrow_avx2_rows) {
        K = padded_taps(&b->h, b->x0, b->x1, in_lo, in_hi);
        vectors = K % 4 == 0;
    }
#endif
#define ALIGNED(n) ((((size_t)(n)) + 63) & ~(size_t)63)
    size_t mid_bytes = ALIGNED(mid_rows * mid_w * C), lines_bytes = ALIGNED(2 * rowbytes);
    size_t first_bytes = vectors ? ALIGNED(width * sizeof(int32_t)) : 0;
    size_t coef_bytes = vectors ? ALIGNED((size_t)width * K * sizeof(int32_t)) : 0;
    size_t vec_bytes = vectors ? ALIGNED((size_t)width * (K / 4) * 32 * sizeof(int16_t)) : 0;
#undef ALIGNED
    Scratch *own = scratch_mine();
    uint8_t *mem = own ? scratch_get(own, vec_bytes + mid_bytes + lines_bytes + first_bytes + coef_bytes +
                                              VCHUNK * sizeof(int32_t))
                       : NULL;
    if (mem == NULL) {
        if (own) scratch_done(own);
        return -1;
    }
    uint8_t *mid = mem + vec_bytes, *lines = mid + mid_bytes; /* the vectors first: 64-byte aligned */
    int32_t *pad_first = (int32_t *)(lines + lines_bytes);
    int32_t *pad_coef = (int32_t *)((uint8_t *)pad_first + first_bytes);
    int32_t *acc = (int32_t *)((uint8_t *)pad_coef + coef_bytes);
    Padded pd = {pad_first, pad_coef, K, NULL};
#ifdef FI_X86
    if (vectors) {
        pad_axis(&b->h, b->x0, b->x1, in_lo, in_hi, pad_first, pad_coef, K);
        expand_avx2(&pd, width, (int16_t *)mem);
        pd.vec = (int16_t *)mem;
    }
#endif

    if (b->has_h && b->has_v && !b->vertical_first) {
        /* horizontal first: source rows lo..hi to the band's columns, then each output row from those */
        hrows(b->src + lo * b->src_stride, b->src_stride, hi - lo, b->src_w, 0, C, &b->h, &pd, b->x0, b->x1, mid,
              rowbytes);
        for (Py_ssize_t y = b->y0; y < b->y1; y++) {
            vrow(mid, rowbytes, b->v.coef + y * b->v.ksize, b->v.first[y] - lo, b->v.count[y], rowbytes, lines, acc);
            emit(b, y - b->y0, lines);
        }
    } else if (b->has_h) {
        /* vertical first: the band's rows over source columns lo..hi, then two rows at a time to the band's
         * columns; or the horizontal pass alone, on the source rows */
        const uint8_t *rows = b->src + b->y0 * b->src_stride;
        Py_ssize_t stride = b->src_stride, w = b->src_w;
        if (b->has_v) {
            Py_ssize_t mid_rowbytes = mid_w * C;
            for (Py_ssize_t y = b->y0; y < b->y1; y++)
                vrow(b->src + lo * C, b->src_stride, b->v.coef + y * b->v.ksize, b->v.first[y], b->v.count[y],
                     mid_rowbytes, mid + (y - b->y0) * mid_rowbytes, acc);
            rows = mid, stride = mid_rowbytes, w = mid_w;
        }
        for (Py_ssize_t y = b->y0; y < b->y1; y += 2) {
            Py_ssize_t n = b->y1 - y < 2 ? b->y1 - y : 2;
            hrows(rows + (y - b->y0) * stride, stride, n, w, in_lo, C, &b->h, &pd, b->x0, b->x1, lines, rowbytes);
            for (Py_ssize_t r = 0; r < n; r++) emit(b, y + r - b->y0, lines + r * rowbytes);
        }
    } else if (b->has_v) {
        for (Py_ssize_t y = b->y0; y < b->y1; y++) {
            vrow(b->src + b->x0 * C, b->src_stride, b->v.coef + y * b->v.ksize, b->v.first[y], b->v.count[y], rowbytes,
                 lines, acc);
            emit(b, y - b->y0, lines);
        }
    } else {
        for (Py_ssize_t y = b->y0; y < b->y1; y++) emit(b, y - b->y0, b->src + y * b->src_stride + b->x0 * C);
    }
    scratch_done(own);
    return 0;
}

/* ---- Python ----------------------------------------------------------------------------------------------------- */

typedef struct {
    Py_buffer views[6]; /* (first, count, coef) of both axes */
    int held;
} Tables;

static void tables_release(Tables *t) {
    for (int i = 0; i < t->held; i++) PyBuffer_Release(&t->views[i]);
    t->held = 0;
}

/* (first, count, coef) int32 arrays of one axis, checked for the outputs [start, stop): every tap inside the input. */
static int get_axis(PyObject *obj, const char *name, Py_ssize_t in_size, Py_ssize_t start, Py_ssize_t stop, Axis *a,
                    Tables *held) {
    if (!PyTuple_Check(obj) || PyTuple_GET_SIZE(obj) != 3) {
        PyErr_Format(PyExc_TypeError, "%s: expected a (first, count, coef) tuple or None", name);
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        Py_buffer *view = &held->views[held->held];
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(obj, i), view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
        held->held++;
        if (view->itemsize != 4 || view->ndim != (i == 2 ? 2 : 1) || strchr("il", view->format[0]) == NULL) {
            PyErr_Format(PyExc_ValueError, "%s: the coefficient tables must be C-contiguous int32 arrays", name);
            return -1;
        }
    }
    Py_buffer *first = &held->views[held->held - 3], *count = first + 1, *coef = first + 2;
    a->first = first->buf;
    a->count = count->buf;
    a->coef = coef->buf;
    a->out_size = first->shape[0];
    a->in_size = in_size;
    a->ksize = (int)coef->shape[1];
    if (count->shape[0] != a->out_size || coef->shape[0] != a->out_size || a->ksize < 1) {
        PyErr_Format(PyExc_ValueError, "%s: first, count and coef disagree on the output size", name);
        return -1;
    }
    if (start < 0 || stop > a->out_size || start >= stop) {
        PyErr_Format(PyExc_ValueError, "%s: outputs [%zd, %zd) outside the table's %zd", name, start, stop, a->out_size);
        return -1;
    }
    for (Py_ssize_t j = start; j < stop; j++) {
        if (a->count[j] < 1 || a->count[j] > a->ksize || a->first[j] < 0 || a->first[j] + a->count[j] > in_size) {
            PyErr_Format(PyExc_ValueError, "%s: output %zd reads outside the %zd inputs", name, j, in_size);
            return -1;
        }
    }
    return 0;
}

PyDoc_STRVAR(resize_doc,
             "resize(src, htable, vtable, vertical_first, y0, y1, x0, x1, dst, table)\n--\n\n"
             "Pillow's 8-bit resize of the uint8 (H, W, C) array `src` (pixels packed: strides (any, C, 1)), only\n"
             "resized rows [y0, y1) and columns [x0, x1). `htable`/`vtable`: the (first, count, coef) int32 tables\n"
             "of the horizontal/vertical pass, or None when that axis is not resized. `dst`: the (y1-y0, x1-x0, C)\n"
             "uint8 result when `table` is None, else the (C, y1-y0, x1-x0) result of out[c] = table[c][value] for a\n"
             "C-contiguous (C, 256) `table` of the same itemsize (1, 2, 4 or 8 bytes). Any strides. GIL released.");

static PyObject *py_resize(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *src_obj, *h_obj, *v_obj, *dst_obj, *table_obj;
    int vertical_first;
    Py_ssize_t y0, y1, x0, x1;
    if (!PyArg_ParseTuple(args, "OOOpnnnnOO:resize", &src_obj, &h_obj, &v_obj, &vertical_first, &y0, &y1, &x0, &x1,
                          &dst_obj, &table_obj))
        return NULL;
    Py_buffer src = {0}, dst = {0}, table = {0};
    Tables tables = {.held = 0};
    PyObject *result = NULL;
    Band b;
    memset(&b, 0, sizeof(b));
    if (PyObject_GetBuffer(src_obj, &src, PyBUF_RECORDS_RO) < 0) return NULL;
    if (PyObject_GetBuffer(dst_obj, &dst, PyBUF_RECORDS) < 0) goto done_src;
    if (table_obj != Py_None && PyObject_GetBuffer(table_obj, &table, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        goto done_dst;

    if (src.ndim != 3 || src.itemsize != 1 || src.format[0] != 'B' || src.shape[2] < 1 || src.shape[2] > 4 ||
        src.strides[2] != 1 || src.strides[1] != src.shape[2] || src.strides[0] < src.shape[1] * src.shape[2]) {
        PyErr_SetString(PyExc_ValueError, "src: expected a uint8 (H, W, C) array, 1 <= C <= 4, with packed pixels");
        goto done;
    }
    b.src = src.buf;
    b.src_h = src.shape[0];
    b.src_w = src.shape[1];
    b.src_stride = src.strides[0];
    b.channels = (int)src.shape[2];
    b.y0 = y0, b.y1 = y1, b.x0 = x0, b.x1 = x1;
    if (y0 < 0 || x0 < 0 || y1 <= y0 || x1 <= x0) {
        PyErr_SetString(PyExc_ValueError, "the window [y0, y1) x [x0, x1) is empty");
        goto done;
    }
    b.has_h = h_obj != Py_None;
    b.has_v = v_obj != Py_None;
    b.vertical_first = vertical_first;
    if (b.has_h && get_axis(h_obj, "htable", b.src_w, x0, x1, &b.h, &tables) < 0) goto done;
    if (b.has_v && get_axis(v_obj, "vtable", b.src_h, y0, y1, &b.v, &tables) < 0) goto done;
    if ((!b.has_h && x1 > b.src_w) || (!b.has_v && y1 > b.src_h)) {
        PyErr_SetString(PyExc_ValueError, "the window is outside the image on an axis that is not resized");
        goto done;
    }
    if (dst.readonly) {
        PyErr_SetString(PyExc_ValueError, "dst is read-only");
        goto done;
    }
    Py_ssize_t want[3];
    if (table_obj == Py_None) {
        want[0] = y1 - y0, want[1] = x1 - x0, want[2] = b.channels;
        b.itemsize = 1;
    } else {
        if (table.ndim != 2 || table.shape[0] != b.channels || table.shape[1] != 256 ||
            (table.itemsize != 1 && table.itemsize != 2 && table.itemsize != 4 && table.itemsize != 8)) {
            PyErr_SetString(PyExc_ValueError, "table: expected a C-contiguous (C, 256) array of 1, 2, 4 or 8-byte items");
            goto done;
        }
        want[0] = b.channels, want[1] = y1 - y0, want[2] = x1 - x0;
        b.itemsize = (int)table.itemsize;
        b.table = table.buf;
    }
    if (dst.ndim != 3 || dst.itemsize != b.itemsize || dst.shape[0] != want[0] || dst.shape[1] != want[1] ||
        dst.shape[2] != want[2]) {
        PyErr_Format(PyExc_ValueError, "dst: expected shape (%zd, %zd, %zd) of %d-byte items", want[0], want[1], want[2],
                     b.itemsize);
        goto done;
    }
    b.dst = dst.buf;
    if (table_obj == Py_None) {
        b.dst_y = dst.strides[0], b.dst_x = dst.strides[1], b.dst_c = dst.strides[2];
    } else {
        b.dst_c = dst.strides[0], b.dst_y = dst.strides[1], b.dst_x = dst.strides[2];
    }

    int status;
    Py_BEGIN_ALLOW_THREADS status = run_band(&b);
    Py_END_ALLOW_THREADS if (status < 0) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    tables_release(&tables);
    if (table_obj != Py_None) PyBuffer_Release(&table);
done_dst:
    PyBuffer_Release(&dst);
done_src:
    PyBuffer_Release(&src);
    return result;
}

/* The kernels this CPU can run, best first; `use` picks one (the tests run each). */
static int isa_choose(const char *name) {
    if (strcmp(name, "portable") == 0) {
        vrow = vrow_portable, hrows = hrow_portable_rows, isa = "portable";
        return 0;
    }
#ifdef FI_X86
    __builtin_cpu_init();
    if (strcmp(name, "sse4.1") == 0 && __builtin_cpu_supports("sse4.1")) {
        vrow = vrow_portable, hrows = hrow_sse41_rows, isa = "sse4.1";
        return 0;
    }
    if (strcmp(name, "avx2") == 0 && __builtin_cpu_supports("avx2")) {
        vrow = vrow_avx2, hrows = hrow_avx2_rows, isa = "avx2";
        return 0;
    }
#endif
    return -1;
}

static PyObject *py_kernels(PyObject *self, PyObject *args) {
    (void)self, (void)args;
    return Py_BuildValue("s", isa);
}

static PyObject *py_use(PyObject *self, PyObject *args) {
    (void)self;
    const char *name;
    if (!PyArg_ParseTuple(args, "s:use", &name)) return NULL;
    const char *before = isa;
    if (isa_choose(name) < 0) return PyErr_Format(PyExc_ValueError, "kernels %R: not available on this CPU", PyTuple_GET_ITEM(args, 0));
    return Py_BuildValue("s", before);
}

static PyMethodDef methods[] = {
    {"resize", py_resize, METH_VARARGS, resize_doc},
    {"kernels", py_kernels, METH_NOARGS, "kernels()\n--\n\nThe kernels in use: 'avx2', 'sse4.1' or 'portable'."},
    {"use", py_use, METH_VARARGS,
     "use(name)\n--\n\nRuns the kernels `name` ('avx2', 'sse4.1', 'portable') from now on; returns the previous name.\n"
     "ValueError when this CPU cannot run them. For tests: every choice gives the same outputs."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_native",
    .m_doc = "Pillow's 8-bit resampling on the CPU, exact, for the window a crop keeps (see fused_imgproc/_native.c).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__native(void) {
    if (!SCRATCH_INIT()) {
        PyErr_SetString(PyExc_ImportError, "fused_imgproc._native: no thread-local storage key");
        return NULL;
    }
    if (isa_choose("avx2") < 0 && isa_choose("sse4.1") < 0) isa_choose("portable");
    return PyModule_Create(&module);
}
