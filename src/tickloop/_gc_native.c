/* Containers the cycle collector need not walk: ``untrack`` and ``frozen_into``.
 *
 * CPython's cycle collector walks every tracked container at each full collection. It drops
 * plain tuples and dicts that hold only atoms (strings, numbers, Decimals) from its lists by
 * itself, but never instances of their subclasses (a NamedTuple such as ``BookLevel``, a dict
 * subclass such as ``DecimalCache``), nor a dict that holds such a tuple. A book's memo of
 * thousands of levels, or a number cache of 100k entries, was then walked at every full
 * collection (twice a second under load) at ~60 ns an entry: 10-16 ms a collection, found with
 * bench/bench_runtime.py (docs/runtime.md, "The garbage collector").
 *
 * ``untrack(obj)``: take ``obj`` off the collector's lists. Only for a container that can never
 * be part of a reference cycle (the caller's docstring says why). CPython tracks a dict again by
 * itself when an object that may be a tracked container is put in it.
 *
 * ``frozen_into(memo, key, cls, *items)``: ``memo[key] = t`` and returns ``t``, where ``t`` is
 * ``cls`` (``tuple``, or a subclass of it without a ``__dict__``) of ``items``, made in one
 * allocation (``tuple.__new__(cls, items)`` makes two) with no ``__new__`` of ``cls`` run (a
 * NamedTuple's only counts the fields; callers give the right number). When no item and not
 * the key is a tracked container, ``t`` cannot be in a cycle: it is untracked, and so is
 * ``memo``, which the insert tracked again. The contract: ``memo`` is a plain dict that holds
 * nothing but what ``frozen_into`` put in it (tickloop.book.engine's level and text memos).
 *
 * SOURCE_DIGEST (the SHA-256 of this file, given by the build as a -D define) lets the Python
 * side refuse a copy built from other source (tickloop/_native.py).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifndef TICKLOOP_SOURCE_DIGEST
#define TICKLOOP_SOURCE_DIGEST ""
#endif

static PyObject *
untrack(PyObject *module, PyObject *obj)
{
    (void)module;
    if (PyObject_IS_GC(obj) && PyObject_GC_IsTracked(obj)) {
        PyObject_GC_UnTrack(obj);
    }
    Py_RETURN_NONE;
}

static int
tracked(PyObject *obj)
{
    return PyObject_IS_GC(obj) && PyObject_GC_IsTracked(obj);
}

static PyObject *
frozen_into(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs < 3 || !PyDict_CheckExact(args[0]) || !PyType_Check(args[2]) ||
        !PyType_IsSubtype((PyTypeObject *)args[2], &PyTuple_Type) ||
        ((PyTypeObject *)args[2])->tp_dictoffset != 0) {
        PyErr_SetString(PyExc_TypeError, "frozen_into(memo, key, cls, *items): memo a dict, cls "
                                         "tuple or a subclass of it without __dict__");
        return NULL;
    }
    PyObject *memo = args[0], *key = args[1];
    PyTypeObject *cls = (PyTypeObject *)args[2];
    Py_ssize_t n = nargs - 3;
    PyObject *out = cls == &PyTuple_Type ? PyTuple_New(n) : cls->tp_alloc(cls, n);
    if (out == NULL) {
        return NULL;
    }
    int atoms = !tracked(key);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = args[i + 3];
        if (tracked(item)) {
            atoms = 0;
        }
        Py_INCREF(item);
        PyTuple_SET_ITEM(out, i, item);
    }
    if (atoms && PyObject_GC_IsTracked(out)) {
        PyObject_GC_UnTrack(out);
    }
    if (PyDict_SetItem(memo, key, out) < 0) {
        Py_DECREF(out);
        return NULL;
    }
    if (atoms && PyObject_GC_IsTracked(memo)) {
        PyObject_GC_UnTrack(memo);
    }
    return out;
}

static PyMethodDef gc_methods[] = {
    {"untrack", (PyCFunction)untrack, METH_O,
     "untrack(obj): the cycle collector stops walking obj (a container that can never be in a "
     "reference cycle)."},
    {"frozen_into", (PyCFunction)(void (*)(void))frozen_into, METH_FASTCALL,
     "frozen_into(memo, key, cls, *items): memo[key] = cls of items, untracked with memo when "
     "nothing in it is a tracked container (memo holds only what frozen_into put there)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef gc_module = {
    PyModuleDef_HEAD_INIT,
    "tickloop._gc_native",
    "Containers the cycle collector need not walk (see the source's opening comment).",
    -1,
    gc_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__gc_native(void)
{
    PyObject *module = PyModule_Create(&gc_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddStringConstant(module, "SOURCE_DIGEST", TICKLOOP_SOURCE_DIGEST) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
