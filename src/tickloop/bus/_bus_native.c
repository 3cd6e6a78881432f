/* The in-process bus's commonest publish in C (``Publisher``, for tickloop.bus.local); its
 * subscriptions' ``async for`` is tickloop.client._reader_native's ``Reader``.
 *
 * ``LocalBus.publish`` in Python spends most of an event on being Python: the closed,
 * type and nesting checks, the route lookup, the clock arithmetic, the envelope, the counter,
 * and per subscriber the length check, the append and the waiter check, each a few bytecodes
 * (349 ns an event to one subscriber, against asyncio.Queue.put_nowait's 226 ns). A
 * ``Publisher`` is the bus's ``publish`` (an instance attribute); it reads the bus's hot state
 * (``LocalBus._state``, a Python object with ``__slots__`` ``closed``, ``depth``, ``offset``,
 * whose slots it reads in place: Python code keeps the speed of its own slots, and the bus's
 * ``__dict__`` is never made, which would slow every attribute of it); it counts what it
 * publishes in ``fast_calls``, which ``LocalBus.published`` adds to the Python paths' count) and does the same work for the commonest case,
 * handing every other case to the Python method, unchanged:
 *
 * - the topic's route is in ``fast``: a dict the bus fills as it computes routes, topic -> a
 *   tuple of ``(buffer, maxsize, inbox, buffer.append)`` for a route whose
 *   every target is a plain ``drop_newest`` reader (no handler, no group), or ``()`` for a
 *   route with no target; the bus empties it whenever it empties its routes;
 * - the bus is open (``closed``) and not inside a handler's publish (``depth`` 0); only a bus
 *   on the system clocks has a ``Publisher``;
 * - the payload's class has a registered event type (``type_of``).
 *
 * An inbox's ``_end`` and ``_waiter`` are Consumer slots, read and written in place at the
 * offsets ``set_consumer_type`` found (20-25 ns an event less than two lookups).
 *
 * Then the envelope is made (``time.monotonic_ns`` is ``clock_gettime(CLOCK_MONOTONIC)``, read
 * here directly; wall time is it plus ``offset``, which the bus re-reads every second), and
 * each target gets the event exactly as the Python path does: a full buffer, or a closed
 * inbox, goes to ``inbox.push`` (which counts the drop, or ignores the event); otherwise the
 * event is appended and a waiting reader's future is resolved.
 *
 * SOURCE_DIGEST (the SHA-256 of this file, given by the build as a -D define) lets the Python
 * side refuse a copy built from other source (tickloop/_native.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <time.h>

#ifndef TICKLOOP_SOURCE_DIGEST
#define TICKLOOP_SOURCE_DIGEST ""
#endif

static PyObject *one, *str_end, *str_waiter, *str_push, *str_done, *str_set_result;

typedef struct {
    PyObject_HEAD
    PyObject *fast;        /* dict: topic -> tuple of (buffer, maxsize, inbox, append) */
    PyObject *slow;        /* the Python publish, bound: slow(topic, payload) */
    PyObject *type_of;     /* dict: payload class -> event type name */
    PyObject *event_type;  /* the Event struct */
    PyObject *state;       /* the bus's _State: closed, depth, offset (its slots) */
    PyObject *ids;         /* the bus's id counter (an iterator of ints) */
    PyObject *source;      /* the bus's name */
    PyObject *last_class;  /* the payload class seen last, and its event type name */
    PyObject *last_type;
    PyObject *offset_seen; /* the ``offset`` int last converted, and its value */
    long long offset;
    Py_ssize_t fast_calls; /* events this object published itself */
    vectorcallfunc vectorcall;
} Publisher;

/* The slots of LocalBus's _State (a Python class with __slots__), found by set_state_type:
   Python code reads and writes them at the speed of its own slots, this code in place. */
static PyTypeObject *state_type;
static Py_ssize_t closed_at = -1, depth_at = -1, offset_at = -1;

static PyObject **
slot_at(PyObject *obj, Py_ssize_t offset)
{
    return (PyObject **)((char *)obj + offset);
}

/* Consumer's ``_end`` and ``_waiter`` slots (set_consumer_type): an inbox's are read and
   written in place (its subclasses define no attribute of those names); an object of another
   class has them looked up. */
static PyTypeObject *consumer_type;
static Py_ssize_t end_at = -1, waiter_at = -1;

static int
is_consumer(PyObject *obj)
{
    return consumer_type != NULL && PyObject_TypeCheck(obj, consumer_type);
}

static PyObject *
slow_path(Publisher *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return PyObject_Vectorcall(self->slow, args, nargsf, kwnames);
}

/* Deliver ``event`` to one plain reader: (buffer, maxsize, inbox, buffer.append). 0, or -1. */
static int
deliver(PyObject *target, PyObject *event)
{
    if (!PyTuple_CheckExact(target) || PyTuple_GET_SIZE(target) != 4) {
        PyErr_SetString(PyExc_SystemError, "bus fast route: a malformed target");
        return -1;
    }
    PyObject *buffer = PyTuple_GET_ITEM(target, 0);
    Py_ssize_t maxsize = PyLong_AsSsize_t(PyTuple_GET_ITEM(target, 1));
    if (maxsize == -1 && PyErr_Occurred()) {
        return -1;
    }
    PyObject *inbox = PyTuple_GET_ITEM(target, 2);
    Py_ssize_t depth = PyObject_Size(buffer);
    if (depth < 0) {
        return -1;
    }
    int slots = is_consumer(inbox);
    PyObject *end = slots ? *slot_at(inbox, end_at) : NULL;
    if (end == NULL) {
        slots = 0;
        end = PyObject_GetAttr(inbox, str_end);
        if (end == NULL) {
            return -1;
        }
        Py_DECREF(end); /* (compared by identity only) */
    }
    PyObject *result;
    if (depth >= maxsize || end != Py_None) {
        /* counts the drop (full), or ignores the event (closed) */
        result = PyObject_CallMethodOneArg(inbox, str_push, event);
        if (result == NULL) {
            return -1;
        }
        Py_DECREF(result);
        return 0;
    }
    result = PyObject_CallOneArg(PyTuple_GET_ITEM(target, 3), event);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    PyObject *waiter;
    if (slots && *slot_at(inbox, waiter_at) != NULL) {
        waiter = *slot_at(inbox, waiter_at);
        if (waiter == Py_None) {
            return 0;
        }
        *slot_at(inbox, waiter_at) = Py_NewRef(Py_None); /* its reference moves to ``waiter`` */
    }
    else {
        waiter = PyObject_GetAttr(inbox, str_waiter);
        if (waiter == NULL) {
            return -1;
        }
        if (waiter == Py_None) {
            Py_DECREF(waiter);
            return 0;
        }
        if (PyObject_SetAttr(inbox, str_waiter, Py_None) < 0) {
            Py_DECREF(waiter);
            return -1;
        }
    }
    int status = 0;
    PyObject *done = PyObject_CallMethodNoArgs(waiter, str_done);
    int is_done = done == NULL ? -1 : PyObject_IsTrue(done);
    Py_XDECREF(done);
    if (is_done < 0) {
        status = -1;
    }
    else if (!is_done) {
        result = PyObject_CallMethodOneArg(waiter, str_set_result, Py_None);
        if (result == NULL) {
            status = -1;
        }
        Py_XDECREF(result);
    }
    Py_DECREF(waiter);
    return status;
}

static PyObject *
Publisher_vectorcall(Publisher *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *state = self->state;
    if (kwnames != NULL || nargs != 2 || !PyUnicode_CheckExact(args[0]) || self->ids == NULL ||
        self->source == NULL || state_type == NULL || Py_TYPE(state) != state_type) {
        return slow_path(self, args, nargsf, kwnames);
    }
    PyObject *depth = *slot_at(state, depth_at), *offset_o = *slot_at(state, offset_at);
    if (*slot_at(state, closed_at) != Py_False || depth == NULL || offset_o == NULL) {
        /* closed (the Python path raises), or not set up */
        return slow_path(self, args, nargsf, kwnames);
    }
    int nested = PyObject_IsTrue(depth);
    if (nested != 0) { /* a handler's publish (queued), or an error */
        return nested < 0 ? NULL : slow_path(self, args, nargsf, kwnames);
    }
    if (offset_o != self->offset_seen) {
        long long offset = PyLong_AsLongLong(offset_o);
        if (offset == -1 && PyErr_Occurred()) {
            return NULL;
        }
        Py_XSETREF(self->offset_seen, Py_NewRef(offset_o));
        self->offset = offset;
    }
    PyObject *topic = args[0], *payload = args[1];
    PyObject *targets = PyDict_GetItemWithError(self->fast, topic);
    if (targets == NULL || !PyTuple_CheckExact(targets)) {
        return PyErr_Occurred() ? NULL : slow_path(self, args, nargsf, kwnames);
    }
    PyObject *type_name;
    if ((PyObject *)Py_TYPE(payload) == self->last_class) { /* a stream publishes one type */
        type_name = self->last_type;
    }
    else {
        type_name = PyDict_GetItemWithError(self->type_of, (PyObject *)Py_TYPE(payload));
        if (type_name == NULL) {
            return PyErr_Occurred() ? NULL : slow_path(self, args, nargsf, kwnames);
        }
        Py_XSETREF(self->last_class, Py_NewRef((PyObject *)Py_TYPE(payload)));
        Py_XSETREF(self->last_type, Py_NewRef(type_name));
    }
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    long long mono = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    Py_INCREF(targets); /* a push may run code that empties ``fast`` */
    Py_INCREF(type_name);
    PyObject *event = NULL;
    PyObject *id = PyIter_Next(self->ids);
    PyObject *wall_o = PyLong_FromLongLong(mono + self->offset);
    PyObject *mono_o = PyLong_FromLongLong(mono);
    if (id == NULL) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_RuntimeError, "the bus's event ids ran out");
        }
        goto done;
    }
    if (wall_o == NULL || mono_o == NULL) {
        goto done;
    }
    PyObject *fields[7] = {type_name, topic, id, self->source, wall_o, mono_o, payload};
    event = PyObject_Vectorcall(self->event_type, fields, 7, NULL);
    if (event == NULL) {
        goto done;
    }
    self->fast_calls++; /* (LocalBus.published adds them to its own count) */
    Py_ssize_t n = PyTuple_GET_SIZE(targets);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (deliver(PyTuple_GET_ITEM(targets, i), event) < 0) {
            Py_CLEAR(event);
            goto done;
        }
    }
done:
    Py_XDECREF(id);
    Py_XDECREF(wall_o);
    Py_XDECREF(mono_o);
    Py_DECREF(type_name);
    Py_DECREF(targets);
    return event;
}

static PyObject *
Publisher_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"fast", "slow", "type_of", "event_type", "state", NULL};
    PyObject *fast, *slow, *type_of, *event_type, *state;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!OO!OO:Publisher", keywords, &PyDict_Type,
                                     &fast, &slow, &PyDict_Type, &type_of, &event_type, &state)) {
        return NULL;
    }
    if (!PyCallable_Check(slow) || !PyCallable_Check(event_type)) {
        PyErr_SetString(PyExc_TypeError, "Publisher: slow and event_type must be callable");
        return NULL;
    }
    Publisher *self = (Publisher *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->fast = Py_NewRef(fast);
    self->slow = Py_NewRef(slow);
    self->type_of = Py_NewRef(type_of);
    self->event_type = Py_NewRef(event_type);
    self->state = Py_NewRef(state);
    self->ids = NULL;
    self->source = NULL;
    self->offset_seen = NULL;
    self->last_class = NULL;
    self->last_type = NULL;
    self->offset = 0;
    self->fast_calls = 0;
    self->vectorcall = (vectorcallfunc)Publisher_vectorcall;
    return (PyObject *)self;
}

static int
Publisher_traverse(Publisher *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fast);
    Py_VISIT(self->slow);
    Py_VISIT(self->type_of);
    Py_VISIT(self->event_type);
    Py_VISIT(self->state);
    Py_VISIT(self->ids);
    Py_VISIT(self->source);
    Py_VISIT(self->offset_seen);
    Py_VISIT(self->last_class);
    Py_VISIT(self->last_type);
    return 0;
}

static int
Publisher_clear(Publisher *self)
{
    Py_CLEAR(self->fast);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->type_of);
    Py_CLEAR(self->event_type);
    Py_CLEAR(self->state);
    Py_CLEAR(self->ids);
    Py_CLEAR(self->source);
    Py_CLEAR(self->offset_seen);
    Py_CLEAR(self->last_class);
    Py_CLEAR(self->last_type);
    return 0;
}

static void
Publisher_dealloc(Publisher *self)
{
    PyObject_GC_UnTrack(self);
    Publisher_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef Publisher_members[] = {
    {"fast", T_OBJECT, offsetof(Publisher, fast), READONLY, "the fast routes (topic -> targets)"},
    {"ids", T_OBJECT, offsetof(Publisher, ids), 0, "the bus's id counter"},
    {"source", T_OBJECT, offsetof(Publisher, source), 0, "the bus's name"},
    {"state", T_OBJECT, offsetof(Publisher, state), READONLY, "the bus's _State"},
    {"fast_calls", T_PYSSIZET, offsetof(Publisher, fast_calls), READONLY,
     "events published by the fast path (not in the state's ``published``)"},
    {NULL},
};

/* ``inspect.signature(bus.publish)``: the Python method's, which this object stands in for. */
static PyObject *
Publisher_signature(Publisher *self, void *closure)
{
    (void)closure;
    PyObject *inspect = PyImport_ImportModule("inspect");
    if (inspect == NULL) {
        return NULL;
    }
    PyObject *signature = PyObject_CallMethod(inspect, "signature", "O", self->slow);
    Py_DECREF(inspect);
    return signature;
}

static PyGetSetDef Publisher_getset[] = {
    {"__signature__", (getter)Publisher_signature, NULL, "the Python publish's signature", NULL},
    {NULL},
};

static PyTypeObject PublisherType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tickloop.bus._bus_native.Publisher",
    .tp_doc = "publish(topic, payload) for LocalBus: the commonest case in C (see the source).",
    .tp_basicsize = sizeof(Publisher),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = Publisher_new,
    .tp_dealloc = (destructor)Publisher_dealloc,
    .tp_traverse = (traverseproc)Publisher_traverse,
    .tp_clear = (inquiry)Publisher_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Publisher, vectorcall),
    .tp_members = Publisher_members,
    .tp_getset = Publisher_getset,
};


static Py_ssize_t
member_offset(PyTypeObject *type, const char *name)
{
    PyObject *descr = PyDict_GetItemString(type->tp_dict, name); /* borrowed */
    if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a slot", type->tp_name, name);
        return -1;
    }
    PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
    if (member->type != T_OBJECT_EX) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not an object slot", type->tp_name, name);
        return -1;
    }
    return member->offset;
}

/* The offsets of ``type``'s object slots ``names`` into ``at``: 0, or -1 with TypeError set
   (``fn`` names the caller in the message). */
static int
find_slots(PyObject *type, const char *fn, const char *const names[], Py_ssize_t at[], int n)
{
    if (!PyType_Check(type)) {
        PyErr_Format(PyExc_TypeError, "%s(cls): a class", fn);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        if ((at[i] = member_offset((PyTypeObject *)type, names[i])) < 0) {
            return -1;
        }
    }
    return 0;
}

static PyObject *
set_state_type(PyObject *module, PyObject *type)
{
    (void)module;
    static const char *const names[] = {"closed", "depth", "offset"};
    Py_ssize_t at[3];
    if (find_slots(type, "set_state_type", names, at, 3) < 0) {
        return NULL;
    }
    Py_XSETREF(state_type, (PyTypeObject *)Py_NewRef(type));
    closed_at = at[0];
    depth_at = at[1];
    offset_at = at[2];
    Py_RETURN_NONE;
}

static PyObject *
set_consumer_type(PyObject *module, PyObject *type)
{
    (void)module;
    static const char *const names[] = {"_end", "_waiter"};
    Py_ssize_t at[2];
    if (find_slots(type, "set_consumer_type", names, at, 2) < 0) {
        return NULL;
    }
    Py_XSETREF(consumer_type, (PyTypeObject *)Py_NewRef(type));
    end_at = at[0];
    waiter_at = at[1];
    Py_RETURN_NONE;
}

static PyMethodDef bus_functions[] = {
    {"set_consumer_type", (PyCFunction)set_consumer_type, METH_O,
     "set_consumer_type(cls): the Consumer class whose _end and _waiter slots Publisher reads "
     "and writes in place."},
    {"set_state_type", (PyCFunction)set_state_type, METH_O,
     "set_state_type(cls): LocalBus's _State class, whose closed, depth and offset slots "
     "Publisher reads."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef bus_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tickloop.bus._bus_native",
    .m_doc = "The in-process bus's commonest publish, in C (see the source's opening comment).",
    .m_size = -1,
    .m_methods = bus_functions,
};

PyMODINIT_FUNC
PyInit__bus_native(void)
{
    struct {
        PyObject **slot;
        const char *text;
    } names[] = {
        {&str_end, "_end"}, {&str_waiter, "_waiter"},
        {&str_push, "push"}, {&str_done, "done"},
        {&str_set_result, "set_result"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (*names[i].slot == NULL && (*names[i].slot = PyUnicode_InternFromString(names[i].text)) == NULL) {
            return NULL;
        }
    }
    if (one == NULL && (one = PyLong_FromLong(1)) == NULL) {
        return NULL;
    }
    if (PyType_Ready(&PublisherType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&bus_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Publisher", (PyObject *)&PublisherType) < 0 ||
        PyModule_AddStringConstant(module, "SOURCE_DIGEST", TICKLOOP_SOURCE_DIGEST) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
