/*
 * Streaming validation of a source map's `mappings` (ECMA-426, "Mappings structure" and
 * "base64 VLQ"), in C because it is the one check whose work is per byte and arithmetic:
 * in Python it runs at about 10 MB/s, here at hundreds of MB/s, with the GIL released.
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
        run(s, (const uint8_t *)data.buf, data.len);
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
