/*
 * Streaming validation of a source map's `mappings` (ECMA-426, "Mappings structure" and
 * "base64 VLQ"), in C because it is the one check whose work is per byte and arithmetic:
 * in Python it runs at about 3 MB/s, here at about 200 MB/s, with the GIL released.
 *
 * `feed(state, data)` consumes the raw characters of the string in any pieces; `state` is
 * an `array('q')` of STATE_SIZE integers owned by bot/engine/mapcheck.py, which documents
 * each slot and holds the pure-Python twin of this loop (`_feed_python`), the reference
 * that the tests compare this module with. The two must agree slot for slot.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

enum {
    S_U, S_SHIFT, S_DIGITS, S_FIELDS, S_AFTER_COMMA, S_LINE, S_COLUMN, S_SOURCE,
    S_ORIGINAL_LINE, S_ORIGINAL_COLUMN, S_NAME, S_MAX_SOURCE, S_MAX_NAME, S_LAST_LINE,
    S_LAST_COLUMN, S_POSITION, S_ERROR, S_ERROR_POSITION, S_ERROR_DETAIL, S_SEGMENTS,
    STATE_SIZE
};

enum {
    E_NONE, E_CHARACTER, E_CONTINUATION, E_EMPTY_SEGMENT, E_FIELD_COUNT, E_TOO_LARGE,
    E_NEGATIVE_COLUMN, E_NEGATIVE_SOURCE, E_NEGATIVE_ORIGINAL_LINE,
    E_NEGATIVE_ORIGINAL_COLUMN, E_NEGATIVE_NAME, E_OUT_OF_RANGE
};

#define LIMIT_32 ((int64_t)1 << 32)
#define RUNNING_LIMIT ((int64_t)1 << 53)

/* base64 digit values (RFC 4648), 64 for ',', 65 for ';', 255 for anything else. */
static uint8_t DIGIT[256];

static void init_digits(void)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    memset(DIGIT, 255, sizeof DIGIT);
    for (int i = 0; i < 64; i++) {
        DIGIT[(uint8_t)alphabet[i]] = (uint8_t)i;
    }
    DIGIT[','] = 64;
    DIGIT[';'] = 65;
}

static int64_t absolute(int64_t v) { return v < 0 ? -v : v; }

static void run(int64_t *s, const uint8_t *p, Py_ssize_t n)
{
    int64_t u = s[S_U], shift = s[S_SHIFT], digits = s[S_DIGITS], fields = s[S_FIELDS];
    int64_t after_comma = s[S_AFTER_COMMA], line = s[S_LINE], column = s[S_COLUMN];
    int64_t source = s[S_SOURCE], oline = s[S_ORIGINAL_LINE], ocolumn = s[S_ORIGINAL_COLUMN];
    int64_t name = s[S_NAME], max_source = s[S_MAX_SOURCE], max_name = s[S_MAX_NAME];
    int64_t last_line = s[S_LAST_LINE], last_column = s[S_LAST_COLUMN];
    int64_t base = s[S_POSITION], segments = s[S_SEGMENTS];
    int64_t error = E_NONE, detail = 0;
    Py_ssize_t i = 0;

    for (; i < n; i++) {
        uint8_t d = DIGIT[p[i]];
        if (d < 64) {
            int64_t bits = d & 31;
            if (bits) {
                if (shift >= 35) { error = E_TOO_LARGE; break; }
                u |= bits << shift;
            }
            if (shift < 35) shift += 5;
            digits++;
            if (d & 32) continue;
            /* The VLQ ends: VLQSignedValue, with the 32-bit limits of both operations. */
            if (u >= LIMIT_32) { error = E_TOO_LARGE; break; }
            int64_t value = u >> 1;
            if (u & 1) value = value ? -value : -((int64_t)1 << 31);
            u = 0; shift = 0; digits = 0;
            switch (fields) {
            case 0:
                column += value;
                if (column < 0) { error = E_NEGATIVE_COLUMN; break; }
                if (column > RUNNING_LIMIT) { error = E_OUT_OF_RANGE; break; }
                break;
            case 1: source += value; break;
            case 2: oline += value; break;
            case 3:
                ocolumn += value;
                if (source < 0) { error = E_NEGATIVE_SOURCE; break; }
                if (oline < 0) { error = E_NEGATIVE_ORIGINAL_LINE; break; }
                if (ocolumn < 0) { error = E_NEGATIVE_ORIGINAL_COLUMN; break; }
                if (absolute(source) > RUNNING_LIMIT || absolute(oline) > RUNNING_LIMIT
                    || absolute(ocolumn) > RUNNING_LIMIT) {
                    error = E_OUT_OF_RANGE; break;
                }
                if (source > max_source) max_source = source;
                break;
            case 4:
                name += value;
                if (name < 0) { error = E_NEGATIVE_NAME; break; }
                if (name > RUNNING_LIMIT) { error = E_OUT_OF_RANGE; break; }
                if (name > max_name) max_name = name;
                break;
            default:
                error = E_FIELD_COUNT; detail = 6; break;
            }
            if (error) break;
            fields++;
            continue;
        }
        if (d == 255) { error = E_CHARACTER; detail = p[i]; break; }
        /* ',' or ';': the segment (if any) ends. */
        if (digits) { error = E_CONTINUATION; break; }
        if (fields == 0) {
            if (d == 64 || after_comma) { error = E_EMPTY_SEGMENT; break; }
        } else {
            if (fields == 2 || fields == 3) { error = E_FIELD_COUNT; detail = fields; break; }
            if (line != last_line) { last_line = line; last_column = column; }
            else if (column > last_column) last_column = column;
            segments++;
            fields = 0;
        }
        if (d == 64) {
            after_comma = 1;
        } else {
            after_comma = 0;
            line++;
            column = 0;
        }
    }
    s[S_U] = u; s[S_SHIFT] = shift; s[S_DIGITS] = digits; s[S_FIELDS] = fields;
    s[S_AFTER_COMMA] = after_comma; s[S_LINE] = line; s[S_COLUMN] = column;
    s[S_SOURCE] = source; s[S_ORIGINAL_LINE] = oline; s[S_ORIGINAL_COLUMN] = ocolumn;
    s[S_NAME] = name; s[S_MAX_SOURCE] = max_source; s[S_MAX_NAME] = max_name;
    s[S_LAST_LINE] = last_line; s[S_LAST_COLUMN] = last_column; s[S_SEGMENTS] = segments;
    s[S_POSITION] = base + i;
    if (error) {
        s[S_ERROR] = error;
        s[S_ERROR_POSITION] = base + i;
        s[S_ERROR_DETAIL] = detail;
    }
}

/*
 * The same state machine, optimistic and with few branches: most maps are valid, and the
 * exact loop above spends most of its time on mispredicted branches (is this digit the last
 * of its VLQ? which field is it?). This pass only commits its result when the whole piece
 * was valid; on anything else (a problem, a VLQ of 7 digits or more) it returns 0 with the
 * state untouched and `run` replays the piece exactly. The checks the exact loop makes when
 * a field completes are made here when its segment ends, or at the end of the piece for a
 * segment still open: a field does not change once complete, so both see the same values.
 */
static int run_fast(int64_t *s, const uint8_t *p, Py_ssize_t n)
{
    int64_t u = s[S_U], shift = s[S_SHIFT], digits = s[S_DIGITS], fields = s[S_FIELDS];
    int64_t after_comma = s[S_AFTER_COMMA], line = s[S_LINE];
    int64_t f[8] = {s[S_COLUMN], s[S_SOURCE], s[S_ORIGINAL_LINE], s[S_ORIGINAL_COLUMN],
                    s[S_NAME], 0, 0, 0};
    int64_t max_source = s[S_MAX_SOURCE], max_name = s[S_MAX_NAME];
    int64_t last_line = s[S_LAST_LINE], last_column = s[S_LAST_COLUMN];
    int64_t segments = s[S_SEGMENTS];
    int64_t bad = 0; /* its sign bit is set by any negative or out-of-range position */

    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t d = DIGIT[p[i]];
        if (d < 64) {
            if (shift >= 30) return 0; /* a 7th digit: the exact loop checks the bounds */
            int64_t cont = d >> 5, term = cont ^ 1;
            u |= (d & 31) << shift;
            shift = (shift + 5) & -cont;
            digits = (digits + 1) & -cont;
            int64_t neg = u & 1, value = u >> 1;
            value = ((value ^ -neg) + neg) - ((neg & (value == 0)) << 31);
            f[fields & 7] += value & -term;
            fields += term;
            u &= -cont;
            continue;
        }
        if (d == 255 || digits) return 0;
        if (fields == 0) {
            if (d == 64 || after_comma) return 0;
        } else {
            if (fields == 2 || fields == 3 || fields > 5) return 0;
            bad |= f[0] | (RUNNING_LIMIT - f[0]);
            if (fields >= 4) {
                bad |= f[1] | f[2] | f[3] | (RUNNING_LIMIT - f[1]) | (RUNNING_LIMIT - f[2])
                       | (RUNNING_LIMIT - f[3]);
                if (f[1] > max_source) max_source = f[1];
                if (fields == 5) {
                    bad |= f[4] | (RUNNING_LIMIT - f[4]);
                    if (f[4] > max_name) max_name = f[4];
                }
            }
            if (line != last_line) { last_line = line; last_column = f[0]; }
            else if (f[0] > last_column) last_column = f[0];
            segments++;
            fields = 0;
        }
        if (d == 64) {
            after_comma = 1;
        } else {
            after_comma = 0;
            line++;
            f[0] = 0;
        }
    }
    if (fields > 5) return 0;
    if (fields >= 1) bad |= f[0] | (RUNNING_LIMIT - f[0]);
    if (fields >= 4) {
        bad |= f[1] | f[2] | f[3] | (RUNNING_LIMIT - f[1]) | (RUNNING_LIMIT - f[2])
               | (RUNNING_LIMIT - f[3]);
        if (f[1] > max_source) max_source = f[1];
    }
    if (fields == 5) {
        bad |= f[4] | (RUNNING_LIMIT - f[4]);
        if (f[4] > max_name) max_name = f[4];
    }
    if (bad < 0) return 0;
    s[S_U] = u; s[S_SHIFT] = shift; s[S_DIGITS] = digits; s[S_FIELDS] = fields;
    s[S_AFTER_COMMA] = after_comma; s[S_LINE] = line; s[S_COLUMN] = f[0];
    s[S_SOURCE] = f[1]; s[S_ORIGINAL_LINE] = f[2]; s[S_ORIGINAL_COLUMN] = f[3];
    s[S_NAME] = f[4]; s[S_MAX_SOURCE] = max_source; s[S_MAX_NAME] = max_name;
    s[S_LAST_LINE] = last_line; s[S_LAST_COLUMN] = last_column; s[S_SEGMENTS] = segments;
    s[S_POSITION] += n;
    return 1;
}

static PyObject *feed(PyObject *module, PyObject *args)
{
    Py_buffer state, data;
    (void)module;
    if (!PyArg_ParseTuple(args, "w*y*:feed", &state, &data)) {
        return NULL;
    }
    if (state.len != (Py_ssize_t)(STATE_SIZE * sizeof(int64_t)) || state.itemsize != 8) {
        PyBuffer_Release(&state);
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "state must be an array('q') of STATE_SIZE items");
        return NULL;
    }
    int64_t *s = (int64_t *)state.buf;
    if (s[S_ERROR] == E_NONE) {
        Py_BEGIN_ALLOW_THREADS
        if (!run_fast(s, (const uint8_t *)data.buf, data.len)) {
            run(s, (const uint8_t *)data.buf, data.len);
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&state);
    PyBuffer_Release(&data);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"feed", feed, METH_VARARGS,
     "feed(state, data): validate the next characters of `mappings` (see mapcheck.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_vlq", "ECMA-426 `mappings` validation (see mapcheck.py).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__vlq(void)
{
    init_digits();
    PyObject *m = PyModule_Create(&module_def);
    if (m != NULL && PyModule_AddIntConstant(m, "STATE_SIZE", STATE_SIZE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
