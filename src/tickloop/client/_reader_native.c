/* ``async for`` over a consumer's buffer, in C: tickloop.client.reader's ``Reader``.
 *
 * The base of the two async iterators over a :class:`tickloop.client.consumers.Consumer`'s
 * buffer, ``tickloop.client.stream.Stream`` (``async for trade in feed.trades(...)``) and
 * ``tickloop.bus.subscription.Subscription`` (``async for event in bus.subscribe(...)``): it
 * holds the fields its ``__anext__`` reads (``_buffer``, ``_inbox`` the consumer, ``_low`` its
 * low water mark + 1, ``_stats``, ``_popleft`` the buffer's, ``_pressure`` whether its policy
 * may pause the source, ``_done_hook`` whether it has an ``on_done`` to look at) and gives the
 * class ``__anext__`` in C. In Python that is an ``async def`` whose
 * commonest path (an event is buffered) makes and runs a coroutine for a few bytecodes: about
 * 200 ns an event on this machine, against 80-95 ns here.
 *
 * When an event is buffered and no bus backend asked to hear what was consumed (the consumer's
 * ``on_done``, when it has one, is None), it does what the Python path does (count the
 * delivery, note the deepest backlog, relieve a paused backpressure consumer at its low mark,
 * pop the event) and returns an awaitable that is already done. Otherwise it returns
 * ``self._anext_slow()``, the class's Python coroutine (it starts a stream, waits for an event,
 * ends the iteration, or tracks what an ``on_done`` backend must acknowledge).
 *
 * The counters live in the consumer's ``ConsumerStats`` (``__slots__``): their slots are read
 * and written in place, at the offsets ``set_stats_type`` found once; any other stats object
 * takes the Python path. The consumer's ``paused`` and a bus inbox's ``on_done`` are slots too,
 * read in place (``set_consumer_types``: 20-25 ns an event less than a lookup); an object of
 * another class has them looked up.
 *
 * SOURCE_DIGEST (the SHA-256 of this file, given by the build as a -D define) lets the Python
 * side refuse a copy built from other source (tickloop/_native.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#ifndef TICKLOOP_SOURCE_DIGEST
#define TICKLOOP_SOURCE_DIGEST ""
#endif

static PyObject **
slot_at(PyObject *obj, Py_ssize_t offset)
{
    return (PyObject **)((char *)obj + offset);
}

static PyTypeObject *stats_type;
static Py_ssize_t delivered_at = -1, high_water_at = -1;

/* Consumer's ``paused`` slot and Inbox's ``on_done`` slot (set_consumer_types): read in place
   for an instance of those classes (their subclasses define no attribute of those names), else
   looked up. A new reference, or NULL with an exception set. */
static PyTypeObject *consumer_type, *inbox_type;
static Py_ssize_t paused_at = -1, on_done_at = -1;

static PyObject *
slot_or_attr(PyObject *obj, PyTypeObject *type, Py_ssize_t at, PyObject *name)
{
    if (type != NULL && PyObject_TypeCheck(obj, type)) {
        PyObject *value = *(PyObject **)((char *)obj + at);
        if (value != NULL) {
            return Py_NewRef(value);
        }
    }
    return PyObject_GetAttr(obj, name);
}
static PyObject *one, *str_on_done, *str_paused, *str_relieve, *str_anext_slow;

typedef struct {
    PyObject_HEAD
    PyObject *buffer, *inbox, *low, *stats, *popleft;
    char pressure;  /* the consumer may pause its source (BACKPRESSURE): check ``paused`` */
    char done_hook; /* the consumer has an ``on_done`` (a bus inbox): check it */
    PyObject *ready; /* the last Ready handed out: used again once no one else holds it */
} Reader;

typedef struct {
    PyObject_HEAD
    PyObject *value; /* what the await gives; NULL once given */
} Ready;

static PyObject *
Ready_await(PyObject *self)
{
    return Py_NewRef(self);
}

static PySendResult
Ready_send(Ready *self, PyObject *arg, PyObject **result)
{
    (void)arg;
    if (self->value == NULL) {
        *result = Py_NewRef(Py_None);
        return PYGEN_RETURN;
    }
    *result = self->value; /* the reference moves */
    self->value = NULL;
    return PYGEN_RETURN;
}

static PyObject *
Ready_next(Ready *self)
{
    PyObject *value = self->value != NULL ? self->value : Py_NewRef(Py_None);
    self->value = NULL;
    /* StopIteration(value), made explicitly: a tuple or an exception as the value stays one */
    PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, value);
    Py_DECREF(value);
    if (stop != NULL) {
        PyErr_SetObject(PyExc_StopIteration, stop);
        Py_DECREF(stop);
    }
    return NULL;
}

static void
Ready_dealloc(Ready *self)
{
    Py_XDECREF(self->value);
    PyObject_Free(self);
}

static PyAsyncMethods Ready_async = {
    .am_await = Ready_await,
    .am_send = (sendfunc)Ready_send,
};

static PyTypeObject ReadyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tickloop.client._reader_native.Ready",
    .tp_doc = "An awaitable that is already done (what Reader.__anext__ returns for a buffered "
              "event).",
    .tp_basicsize = sizeof(Ready),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)Ready_dealloc,
    .tp_as_async = &Ready_async,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)Ready_next,
};

static PyObject *
slow_anext(Reader *self)
{
    return PyObject_CallMethodNoArgs((PyObject *)self, str_anext_slow);
}


static PyObject *
Reader_anext(Reader *self)
{
    PyObject *buffer = self->buffer, *stats = self->stats;
    if (buffer == NULL || stats == NULL || self->inbox == NULL || self->popleft == NULL ||
        self->low == NULL || Py_TYPE(stats) != stats_type) {
        return slow_anext(self);
    }
    if (self->done_hook) {
        PyObject *on_done = slot_or_attr(self->inbox, inbox_type, on_done_at, str_on_done);
        if (on_done == NULL) {
            return NULL;
        }
        Py_DECREF(on_done); /* (compared by identity only) */
        if (on_done != Py_None) {
            return slow_anext(self);
        }
    }
    Py_ssize_t depth = PyObject_Size(buffer);
    if (depth < 0) {
        return NULL;
    }
    if (depth == 0) {
        return slow_anext(self);
    }
    PyObject **delivered = slot_at(stats, delivered_at), **high = slot_at(stats, high_water_at);
    if (*delivered == NULL || *high == NULL) {
        return slow_anext(self);
    }
    PyObject *count = PyNumber_Add(*delivered, one);
    if (count == NULL) {
        return NULL;
    }
    Py_SETREF(*delivered, count);
    Py_ssize_t deepest = PyLong_AsSsize_t(*high);
    if (deepest == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (depth > deepest) {
        PyObject *now = PyLong_FromSsize_t(depth);
        if (now == NULL) {
            return NULL;
        }
        Py_SETREF(*high, now);
    }
    PyObject *paused =
        self->pressure ? slot_or_attr(self->inbox, consumer_type, paused_at, str_paused) : NULL;
    if (paused == NULL && PyErr_Occurred()) {
        return NULL;
    }
    Py_XDECREF(paused); /* (compared by identity only) */
    if (paused == Py_True) {
        Py_ssize_t low = PyLong_AsSsize_t(self->low);
        if (low == -1 && PyErr_Occurred()) {
            return NULL;
        }
        if (depth <= low) {
            PyObject *done = PyObject_CallMethodNoArgs(self->inbox, str_relieve);
            if (done == NULL) {
                return NULL;
            }
            Py_DECREF(done);
        }
    }
    PyObject *event = PyObject_CallNoArgs(self->popleft);
    if (event == NULL) {
        return NULL;
    }
    Ready *ready = (Ready *)self->ready;
    if (ready != NULL && Py_REFCNT(ready) == 1 && ready->value == NULL) {
        /* the last one was awaited and let go (as ``async for`` does): no allocation */
        ready->value = event;
        return Py_NewRef(ready);
    }
    ready = PyObject_New(Ready, &ReadyType);
    if (ready == NULL) {
        Py_DECREF(event);
        return NULL;
    }
    ready->value = event;
    Py_XSETREF(self->ready, Py_NewRef(ready));
    return (PyObject *)ready;
}

static int
Reader_traverse(Reader *self, visitproc visit, void *arg)
{
    Py_VISIT(self->buffer);
    Py_VISIT(self->inbox);
    Py_VISIT(self->low);
    Py_VISIT(self->stats);
    Py_VISIT(self->popleft);
    return 0;
}

static int
Reader_clear(Reader *self)
{
    Py_CLEAR(self->buffer);
    Py_CLEAR(self->inbox);
    Py_CLEAR(self->low);
    Py_CLEAR(self->stats);
    Py_CLEAR(self->popleft);
    Py_CLEAR(self->ready);
    return 0;
}

static void
Reader_dealloc(Reader *self)
{
    PyObject_GC_UnTrack(self);
    Reader_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef Reader_members[] = {
    {"_buffer", T_OBJECT_EX, offsetof(Reader, buffer), 0, NULL},
    {"_inbox", T_OBJECT_EX, offsetof(Reader, inbox), 0, NULL},
    {"_low", T_OBJECT_EX, offsetof(Reader, low), 0, NULL},
    {"_stats", T_OBJECT_EX, offsetof(Reader, stats), 0, NULL},
    {"_popleft", T_OBJECT_EX, offsetof(Reader, popleft), 0, NULL},
    {"_pressure", T_BOOL, offsetof(Reader, pressure), 0, NULL},
    {"_done_hook", T_BOOL, offsetof(Reader, done_hook), 0, NULL},
    {NULL},
};

static PyAsyncMethods Reader_async = {
    .am_anext = (unaryfunc)Reader_anext,
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "tickloop.client._reader_native.Reader",
    .tp_doc = "The fields and the C __anext__ of a consumer's async iterator (see the source).",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_traverse = (traverseproc)Reader_traverse,
    .tp_clear = (inquiry)Reader_clear,
    .tp_as_async = &Reader_async,
    .tp_members = Reader_members,
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

static PyObject *
set_stats_type(PyObject *module, PyObject *type)
{
    (void)module;
    if (!PyType_Check(type)) {
        PyErr_SetString(PyExc_TypeError, "set_stats_type(cls): a class");
        return NULL;
    }
    Py_ssize_t delivered = member_offset((PyTypeObject *)type, "delivered");
    Py_ssize_t high = delivered < 0 ? -1 : member_offset((PyTypeObject *)type, "high_water");
    if (high < 0) {
        return NULL;
    }
    Py_XSETREF(stats_type, (PyTypeObject *)Py_NewRef(type));
    delivered_at = delivered;
    high_water_at = high;
    Py_RETURN_NONE;
}

static PyObject *
set_consumer_types(PyObject *module, PyObject *args)
{
    (void)module;
    PyObject *consumer, *inbox;
    if (!PyArg_ParseTuple(args, "O!O!:set_consumer_types", &PyType_Type, &consumer,
                          &PyType_Type, &inbox)) {
        return NULL;
    }
    Py_ssize_t paused = member_offset((PyTypeObject *)consumer, "paused");
    Py_ssize_t on_done = paused < 0 ? -1 : member_offset((PyTypeObject *)inbox, "on_done");
    if (on_done < 0) {
        return NULL;
    }
    Py_XSETREF(consumer_type, (PyTypeObject *)Py_NewRef(consumer));
    Py_XSETREF(inbox_type, (PyTypeObject *)Py_NewRef(inbox));
    paused_at = paused;
    on_done_at = on_done;
    Py_RETURN_NONE;
}

static PyMethodDef reader_functions[] = {
    {"set_consumer_types", (PyCFunction)set_consumer_types, METH_VARARGS,
     "set_consumer_types(consumer_cls, inbox_cls): the classes whose paused and on_done slots "
     "Reader.__anext__ reads in place."},
    {"set_stats_type", (PyCFunction)set_stats_type, METH_O,
     "set_stats_type(cls): the ConsumerStats class whose delivered and high_water slots "
     "Reader.__anext__ updates."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef reader_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "tickloop.client._reader_native",
    .m_doc = "async for over a consumer's buffer, in C (see the source's opening comment).",
    .m_size = -1,
    .m_methods = reader_functions,
};

PyMODINIT_FUNC
PyInit__reader_native(void)
{
    struct {
        PyObject **slot;
        const char *text;
    } names[] = {
        {&str_on_done, "on_done"}, {&str_paused, "paused"}, {&str_relieve, "_relieve"},
        {&str_anext_slow, "_anext_slow"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (*names[i].slot == NULL &&
            (*names[i].slot = PyUnicode_InternFromString(names[i].text)) == NULL) {
            return NULL;
        }
    }
    if (one == NULL && (one = PyLong_FromLong(1)) == NULL) {
        return NULL;
    }
    if (PyType_Ready(&ReadyType) < 0 || PyType_Ready(&ReaderType) < 0) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&reader_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Reader", (PyObject *)&ReaderType) < 0 ||
        PyModule_AddStringConstant(module, "SOURCE_DIGEST", TICKLOOP_SOURCE_DIGEST) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
