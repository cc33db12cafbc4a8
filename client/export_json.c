/* An export page's JSON lines, read straight from its protobuf bytes.

   `exported_lines(page)` takes a serialized StreamExportDatasetResponse (or
   ExportDatasetResponse: both keep their ExportedComments in PAGE_COMMENTS_FIELD) and
   answers the JSONL of its comments exactly as client/records.py's `exported_lines`
   writes them: json_format's proto3 JSON mapping with proto field names, fields in number
   order, defaults left out, Struct keys sorted, and `json.dumps(ensure_ascii=False,
   separators=(",", ":"))`'s text. Reading each field through the protobuf objects costs
   Python about 100 ns a field, which caps `corrigo export` far below the server's stream;
   here a comment costs about two microseconds. Which fields each message has, and how
   each is written, comes from export_json_tables.h, which `make gen` writes from the
   protos.

   It answers None for anything it does not know to write exactly as json_format does
   (a field the tables do not have or leave to Python, a repeated singular field, fields
   out of order, a non-finite number in a Struct, a time out of range, bytes that are not
   UTF-8): the caller then uses the Python writer, whose output and errors are
   json_format's own. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

/* What every step answers: done, left to the Python writer, or failed with a Python
   exception set (no memory). */
enum { FAILED = -1, UNSUPPORTED = 0, DONE = 1 };

#define TRY(step)                  \
    do {                           \
        int done_ = (step);        \
        if (done_ != DONE) {       \
            return done_;          \
        }                          \
    } while (0)

/* Struct values nest; deeper than this is left to the Python writer. */
#define MAX_DEPTH 64
/* A Struct's keys are checked for duplicates (the map keeps one); more keys than this
   are left to the Python writer. */
#define MAX_KEYS 64
/* Timestamp's valid range (0001-01-01 .. 9999-12-31), in seconds since the epoch. */
#define MIN_SECONDS (-62135596800LL)
#define MAX_SECONDS 253402300799LL

/* The output, grown as needed. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} Out;

static int
reserve(Out *out, size_t extra)
{
    if (out->len + extra <= out->cap) {
        return DONE;
    }
    size_t cap = out->cap ? out->cap : 65536;
    while (cap < out->len + extra) {
        cap *= 2;
    }
    char *data = PyMem_Realloc(out->data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return FAILED;
    }
    out->data = data;
    out->cap = cap;
    return DONE;
}

static int
put(Out *out, const char *text, size_t len)
{
    TRY(reserve(out, len));
    memcpy(out->data + out->len, text, len);
    out->len += len;
    return DONE;
}

#define PUT(out, literal) put((out), (literal), sizeof(literal) - 1)

/* The protobuf input: a message's bytes, read from `p` on. */
typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} In;

/* One field as read: its number, wire type and value (a varint or fixed64's bits, or a
   length-delimited field's bytes). */
typedef struct {
    uint32_t number;
    uint32_t wire;
    uint64_t value;
    In bytes;
} Field;

enum { VARINT = 0, FIXED64 = 1, LEN = 2, FIXED32 = 5 };

static int
varint(In *in, uint64_t *value)
{
    uint64_t made = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (in->p >= in->end) {
            return UNSUPPORTED;
        }
        uint8_t byte = *in->p++;
        made |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *value = made;
            return DONE;
        }
    }
    return UNSUPPORTED;
}

static int
next_field(In *in, Field *field)
{
    uint64_t tag;
    TRY(varint(in, &tag));
    if (tag >> 3 == 0 || tag >> 3 > 536870911) {
        return UNSUPPORTED;
    }
    field->number = (uint32_t)(tag >> 3);
    field->wire = (uint32_t)(tag & 7);
    switch (field->wire) {
    case VARINT:
        return varint(in, &field->value);
    case FIXED64:
        if (in->end - in->p < 8) {
            return UNSUPPORTED;
        }
        field->value = 0;
        for (int i = 7; i >= 0; i--) {
            field->value = (field->value << 8) | in->p[i];
        }
        in->p += 8;
        return DONE;
    case LEN: {
        uint64_t len;
        TRY(varint(in, &len));
        if (len > (uint64_t)(in->end - in->p)) {
            return UNSUPPORTED;
        }
        field->bytes.p = in->p;
        field->bytes.end = in->p + len;
        in->p += len;
        return DONE;
    }
    case FIXED32:
        if (in->end - in->p < 4) {
            return UNSUPPORTED;
        }
        in->p += 4;
        return DONE;
    default:
        return UNSUPPORTED;
    }
}

/* Fields in number order, a singular one at most once: what protobuf writes. Anything
   else (which protobuf would merge, or let the last occurrence win) is left to the
   Python writer. */
static int
in_order(uint32_t *last, const Field *field, int repeated)
{
    if (field->number > *last || (repeated && field->number == *last)) {
        *last = field->number;
        return DONE;
    }
    return UNSUPPORTED;
}

static int
expect(const Field *field, uint32_t wire)
{
    return field->wire == wire ? DONE : UNSUPPORTED;
}

/* A JSON object being written: a comma goes before every key but the first, and the
   repeated field whose array is open (0: none) closes when another field comes. */
typedef struct {
    Out *out;
    int empty;
    uint32_t open;
} Object;

static int
key(Object *object, const char *quoted, size_t len)
{
    if (!object->empty) {
        TRY(PUT(object->out, ","));
    }
    object->empty = 0;
    return put(object->out, quoted, len);
}

/* The length of the UTF-8 sequence starting at `p`, or 0 when it is not valid UTF-8
   (overlong, a surrogate, beyond U+10FFFF, cut short). */
static size_t
utf8_length(const uint8_t *p, const uint8_t *end)
{
    uint8_t lead = p[0];
    size_t left = (size_t)(end - p);
    if (lead >= 0xc2 && lead <= 0xdf) {
        return left >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    }
    if (lead >= 0xe0 && lead <= 0xef) {
        uint8_t low = lead == 0xe0 ? 0xa0 : 0x80;
        uint8_t high = lead == 0xed ? 0x9f : 0xbf;
        if (left < 3 || p[1] < low || p[1] > high || (p[2] & 0xc0) != 0x80) {
            return 0;
        }
        return 3;
    }
    if (lead >= 0xf0 && lead <= 0xf4) {
        uint8_t low = lead == 0xf0 ? 0x90 : 0x80;
        uint8_t high = lead == 0xf4 ? 0x8f : 0xbf;
        if (left < 4 || p[1] < low || p[1] > high || (p[2] & 0xc0) != 0x80 ||
            (p[3] & 0xc0) != 0x80) {
            return 0;
        }
        return 4;
    }
    return 0;
}

/* A JSON string as `json.dumps(ensure_ascii=False)` writes it: `"` and `\` escaped,
   control characters as \n, \r, \t, \b, \f or \u00xx, everything else as it is. */
static int
string(Out *out, In text)
{
    static const char hex[] = "0123456789abcdef";
    size_t len = (size_t)(text.end - text.p);
    TRY(reserve(out, 6 * len + 2));
    char *w = out->data + out->len;
    *w++ = '"';
    const uint8_t *p = text.p;
    while (p < text.end) {
        uint8_t c = *p;
        if (c >= 0x80) {
            size_t n = utf8_length(p, text.end);
            if (n == 0) {
                return UNSUPPORTED;
            }
            memcpy(w, p, n);
            w += n;
            p += n;
            continue;
        }
        p++;
        if (c >= 0x20 && c != '"' && c != '\\') {
            *w++ = (char)c;
            continue;
        }
        *w++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *w++ = (char)c;
            break;
        case '\n':
            *w++ = 'n';
            break;
        case '\r':
            *w++ = 'r';
            break;
        case '\t':
            *w++ = 't';
            break;
        case '\b':
            *w++ = 'b';
            break;
        case '\f':
            *w++ = 'f';
            break;
        default:
            *w++ = 'u';
            *w++ = '0';
            *w++ = '0';
            *w++ = hex[c >> 4];
            *w++ = hex[c & 15];
        }
    }
    *w++ = '"';
    out->len = (size_t)(w - out->data);
    return DONE;
}

/* A finite double as Python's repr writes it (json.dumps writes floats so). */
static int
number(Out *out, double value)
{
    char *text = PyOS_double_to_string(value, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL) {
        return FAILED;
    }
    int done = put(out, text, strlen(text));
    PyMem_Free(text);
    return done;
}

static double
as_double(uint64_t bits)
{
    double value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* A double field's JSON: non-finite values are strings in the proto3 mapping. */
static int
double_value(Out *out, double value)
{
    if (isnan(value)) {
        return PUT(out, "\"NaN\"");
    }
    if (isinf(value)) {
        return value < 0 ? PUT(out, "\"-Infinity\"") : PUT(out, "\"Infinity\"");
    }
    return number(out, value);
}

/* Whether a proto3 double is written: anything but +0.0 (-0.0 is a set value). */
static int
double_set(double value)
{
    return value != 0.0 || signbit(value);
}

static char *
digits(char *w, uint64_t value, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        w[i] = (char)('0' + value % 10);
        value /= 10;
    }
    return w + width;
}

/* Timestamp.ToJsonString: RFC 3339 in UTC, with 0, 3, 6 or 9 digits of fraction. */
static int
timestamp(Out *out, In in)
{
    int64_t seconds = 0;
    int64_t nanos = 0;
    uint32_t last = 0;
    Field field;
    while (in.p < in.end) {
        TRY(next_field(&in, &field));
        TRY(in_order(&last, &field, 0));
        TRY(expect(&field, VARINT));
        if (field.number == 1) {
            seconds = (int64_t)field.value;
        }
        else if (field.number == 2) {
            nanos = (int32_t)(uint32_t)(field.value & 0xffffffffu);
        }
        else {
            return UNSUPPORTED;
        }
    }
    if (seconds < MIN_SECONDS || seconds > MAX_SECONDS || nanos < 0 || nanos > 999999999) {
        return UNSUPPORTED;
    }
    int64_t days = seconds / 86400;
    int64_t rest = seconds % 86400;
    if (rest < 0) {
        rest += 86400;
        days -= 1;
    }
    /* Days since the epoch to a civil date (H. Hinnant's days_from_civil, inverted). */
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t day = doy - (153 * mp + 2) / 5 + 1;
    int64_t month = mp < 10 ? mp + 3 : mp - 9;
    int64_t year = yoe + era * 400 + (month <= 2);

    TRY(reserve(out, 32));
    char *w = out->data + out->len;
    *w++ = '"';
    w = digits(w, (uint64_t)year, 4);
    *w++ = '-';
    w = digits(w, (uint64_t)month, 2);
    *w++ = '-';
    w = digits(w, (uint64_t)day, 2);
    *w++ = 'T';
    w = digits(w, (uint64_t)(rest / 3600), 2);
    *w++ = ':';
    w = digits(w, (uint64_t)(rest / 60 % 60), 2);
    *w++ = ':';
    w = digits(w, (uint64_t)(rest % 60), 2);
    if (nanos) {
        *w++ = '.';
        if (nanos % 1000000 == 0) {
            w = digits(w, (uint64_t)(nanos / 1000000), 3);
        }
        else if (nanos % 1000 == 0) {
            w = digits(w, (uint64_t)(nanos / 1000), 6);
        }
        else {
            w = digits(w, (uint64_t)nanos, 9);
        }
    }
    *w++ = 'Z';
    *w++ = '"';
    out->len = (size_t)(w - out->data);
    return DONE;
}

static int struct_object(Out *out, In in, int depth);

/* A google.protobuf.Value: the JSON value of its one kind (none or null_value: null). */
static int
value(Out *out, In in, int depth)
{
    Field field;
    Field kind;
    int kinds = 0;
    while (in.p < in.end) {
        TRY(next_field(&in, &kind));
        kinds++;
    }
    if (kinds > 1) {
        return UNSUPPORTED;
    }
    if (kinds == 0) {
        return PUT(out, "null");
    }
    field = kind;
    switch (field.number) {
    case 1:
        TRY(expect(&field, VARINT));
        return PUT(out, "null");
    case 2: {
        TRY(expect(&field, FIXED64));
        double found = as_double(field.value);
        if (!isfinite(found)) {
            return UNSUPPORTED; /* json_format refuses it: the Python writer raises */
        }
        return number(out, found);
    }
    case 3:
        TRY(expect(&field, LEN));
        return string(out, field.bytes);
    case 4:
        TRY(expect(&field, VARINT));
        return field.value ? PUT(out, "true") : PUT(out, "false");
    case 5:
        TRY(expect(&field, LEN));
        return struct_object(out, field.bytes, depth + 1);
    case 6: {
        TRY(expect(&field, LEN));
        if (depth + 1 > MAX_DEPTH) {
            return UNSUPPORTED;
        }
        TRY(PUT(out, "["));
        In items = field.bytes;
        int first = 1;
        while (items.p < items.end) {
            TRY(next_field(&items, &field));
            if (field.number != 1) {
                return UNSUPPORTED;
            }
            TRY(expect(&field, LEN));
            if (!first) {
                TRY(PUT(out, ","));
            }
            first = 0;
            TRY(value(out, field.bytes, depth + 1));
        }
        return PUT(out, "]");
    }
    default:
        return UNSUPPORTED;
    }
}

/* Whether Struct key `a` sorts before `b`: byte order, which for UTF-8 is the order of
   code points (Python's order of str). */
static int
key_before(In a, In b)
{
    size_t a_len = (size_t)(a.end - a.p);
    size_t b_len = (size_t)(b.end - b.p);
    int order = memcmp(a.p, b.p, a_len < b_len ? a_len : b_len);
    return order < 0 || (order == 0 && a_len < b_len);
}

/* A google.protobuf.Struct, its entries sorted by key: the map's own order (which
   json_format keeps) is seeded per process, and exports must be byte-stable. */
static int
struct_object(Out *out, In in, int depth)
{
    In names[MAX_KEYS];
    In items[MAX_KEYS];
    int count = 0;
    Field field;
    if (depth > MAX_DEPTH) {
        return UNSUPPORTED;
    }
    while (in.p < in.end) {
        TRY(next_field(&in, &field));
        if (field.number != 1 || count == MAX_KEYS) {
            return UNSUPPORTED;
        }
        TRY(expect(&field, LEN));
        In entry = field.bytes;
        In name = {entry.p, entry.p};
        In item = {entry.p, entry.p};
        uint32_t last = 0;
        while (entry.p < entry.end) {
            TRY(next_field(&entry, &field));
            TRY(in_order(&last, &field, 0));
            TRY(expect(&field, LEN));
            if (field.number == 1) {
                name = field.bytes;
            }
            else if (field.number == 2) {
                item = field.bytes;
            }
            else {
                return UNSUPPORTED;
            }
        }
        /* Insertion sort: a few dozen keys at most. A key met twice (the map keeps one) is
           left to the Python writer. */
        int at = count;
        while (at > 0 && key_before(name, names[at - 1])) {
            names[at] = names[at - 1];
            items[at] = items[at - 1];
            at--;
        }
        if (at > 0 && !key_before(names[at - 1], name)) {
            return UNSUPPORTED;
        }
        names[at] = name;
        items[at] = item;
        count++;
    }
    TRY(PUT(out, "{"));
    for (int i = 0; i < count; i++) {
        if (i > 0) {
            TRY(PUT(out, ","));
        }
        TRY(string(out, names[i]));
        TRY(PUT(out, ":"));
        TRY(value(out, items[i], depth));
    }
    return PUT(out, "}");
}

/* How a field's value is written (the generated tables name one per field). */
typedef enum {
    KIND_PYTHON = 0, /* not written here: the page goes to the Python writer */
    KIND_STRING,
    KIND_BOOL,
    KIND_DOUBLE,
    KIND_INT32, /* a JSON number */
    KIND_UINT32,
    KIND_INT64, /* a JSON string, as the proto3 mapping writes 64-bit integers */
    KIND_UINT64,
    KIND_MESSAGE,
    KIND_TIMESTAMP,
    KIND_STRUCT,
} Kind;

typedef struct MessageSpec MessageSpec;

/* One field of a message: how it is written, whether it repeats, whether a default value
   is still written (a field with presence), its quoted JSON key with the colon, and the
   message type of a KIND_MESSAGE field. */
typedef struct {
    Kind kind;
    int repeated;
    int presence;
    const char *key;
    size_t key_len;
    const MessageSpec *message;
} FieldSpec;

/* A message type's fields, indexed by field number. */
struct MessageSpec {
    const FieldSpec *fields;
    uint32_t count;
};

#include "export_json_tables.h"

/* Before an item of a repeated field: its key and `[` for the first, a comma after. */
static int
array_item(Object *object, uint32_t number, const FieldSpec *spec)
{
    if (object->open == number) {
        return PUT(object->out, ",");
    }
    TRY(key(object, spec->key, spec->key_len));
    object->open = number;
    return PUT(object->out, "[");
}

static int
array_close(Object *object, uint32_t next)
{
    if (object->open == 0 || object->open == next) {
        return DONE;
    }
    object->open = 0;
    return PUT(object->out, "]");
}

static int message(Out *out, In in, const MessageSpec *spec);

/* An integer field's value from its varint: int32 and uint32 as numbers, int64 and
   uint64 as strings. */
static int
integer(Out *out, Kind kind, uint64_t value)
{
    char text[24];
    int len;
    switch (kind) {
    case KIND_INT32:
        len = snprintf(text, sizeof text, "%ld", (long)(int32_t)(uint32_t)value);
        break;
    case KIND_UINT32:
        len = snprintf(text, sizeof text, "%lu", (unsigned long)(uint32_t)value);
        break;
    case KIND_INT64:
        len = snprintf(text, sizeof text, "\"%lld\"", (long long)(int64_t)value);
        break;
    default:
        len = snprintf(text, sizeof text, "\"%llu\"", (unsigned long long)value);
        break;
    }
    return put(out, text, (size_t)len);
}

/* One field of a message, as its spec says; UNSUPPORTED for a field the tables leave to
   the Python writer. */
static int
write_field(Object *object, const FieldSpec *spec, const Field *field)
{
    Out *out = object->out;
    /* Singular only: the tables leave repeated (packed) scalars to Python. */
    if (spec->kind == KIND_BOOL) {
        TRY(expect(field, VARINT));
        if (field->value == 0 && !spec->presence) {
            return DONE;
        }
        TRY(key(object, spec->key, spec->key_len));
        return field->value ? PUT(out, "true") : PUT(out, "false");
    }
    if (spec->kind == KIND_DOUBLE) {
        TRY(expect(field, FIXED64));
        double found = as_double(field->value);
        if (!double_set(found) && !spec->presence) {
            return DONE;
        }
        TRY(key(object, spec->key, spec->key_len));
        return double_value(out, found);
    }
    if (spec->kind >= KIND_INT32 && spec->kind <= KIND_UINT64) {
        TRY(expect(field, VARINT));
        if (field->value == 0 && !spec->presence) {
            return DONE;
        }
        TRY(key(object, spec->key, spec->key_len));
        return integer(out, spec->kind, field->value);
    }
    if (spec->kind == KIND_PYTHON) {
        return UNSUPPORTED;
    }
    TRY(expect(field, LEN));
    if (spec->repeated) {
        TRY(array_item(object, field->number, spec));
    }
    else if (spec->kind == KIND_STRING && field->bytes.p == field->bytes.end && !spec->presence) {
        return DONE;
    }
    else {
        TRY(key(object, spec->key, spec->key_len));
    }
    switch (spec->kind) {
    case KIND_STRING:
        return string(out, field->bytes);
    case KIND_MESSAGE:
        return message(out, field->bytes, spec->message);
    case KIND_TIMESTAMP:
        return timestamp(out, field->bytes);
    default:
        return struct_object(out, field->bytes, 1);
    }
}

/* A message as a JSON object, each field written as its type's table says. */
static int
message(Out *out, In in, const MessageSpec *spec)
{
    Object object = {out, 1, 0};
    uint32_t last = 0;
    Field field;
    TRY(PUT(out, "{"));
    while (in.p < in.end) {
        TRY(next_field(&in, &field));
        if (field.number >= spec->count) {
            return UNSUPPORTED;
        }
        const FieldSpec *field_spec = &spec->fields[field.number];
        TRY(array_close(&object, field.number));
        TRY(in_order(&last, &field, field_spec->repeated));
        TRY(write_field(&object, field_spec, &field));
    }
    TRY(array_close(&object, 0));
    return PUT(out, "}");
}

static int
page_lines(Out *out, In in)
{
    Field field;
    while (in.p < in.end) {
        TRY(next_field(&in, &field));
        if (field.number == PAGE_COMMENTS_FIELD) {
            TRY(expect(&field, LEN));
            TRY(message(out, field.bytes, EXPORTED_COMMENT));
            TRY(PUT(out, "\n"));
        }
    }
    return DONE;
}

static PyObject *
exported_lines(PyObject *module, PyObject *page)
{
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(page, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    Out out = {NULL, 0, 0};
    In in = {(const uint8_t *)view.buf, (const uint8_t *)view.buf + view.len};
    int done = page_lines(&out, in);
    PyBuffer_Release(&view);
    PyObject *result = NULL;
    if (done == DONE) {
        result = PyBytes_FromStringAndSize(out.data ? out.data : "", (Py_ssize_t)out.len);
    }
    else if (done == UNSUPPORTED) {
        result = Py_NewRef(Py_None);
    }
    PyMem_Free(out.data);
    return result;
}

static PyMethodDef methods[] = {
    {"exported_lines", exported_lines, METH_O,
     "exported_lines(page: bytes) -> bytes | None\n\n"
     "The JSON lines of a serialized export page's comments, or None where the Python "
     "writer must write them."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "corrigo.client.export_json",
    "An export page's JSON lines, read straight from its protobuf bytes.",
    0,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit_export_json(void)
{
    return PyModule_Create(&module);
}
