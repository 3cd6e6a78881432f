/* The first step of a coroutine handler, in C: tickloop.runtime.fanout's per-call driver.
 *
 * The engine's market fan-out starts every coroutine handler inline and runs it up to its
 * first wait. From Python (or from mypyc-compiled code) the cheapest way to do that without a
 * StopIteration being made and caught is ``for yielded in coro.__await__(): break``, which
 * looks up ``__await__`` (a slot wrapper: a bound method-wrapper is made), calls it (a
 * coroutine wrapper is made) and iterates that: two objects and two calls per handler call.
 * ``PyIter_Send`` runs the coroutine's own send slot directly and says whether it returned or
 * yielded, with nothing made.
 *
 * ``first_step(coro, nothing)``: runs ``coro`` (a native coroutine, ``types.CoroutineType``;
 * anything else is a TypeError, which the caller never gives) up to its first ``yield`` and
 * returns what it yielded; when it returned instead, returns ``nothing`` (its return value is
 * dropped, as a handler's is); when it raised, the exception propagates.
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
first_step(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "first_step(coro, nothing) takes two arguments");
        return NULL;
    }
    PyObject *coro = args[0];
    if (!PyCoro_CheckExact(coro)) {
        PyErr_Format(PyExc_TypeError, "first_step() needs a coroutine, not %.100s",
                     Py_TYPE(coro)->tp_name);
        return NULL;
    }
    PyObject *result = NULL;
    switch (PyIter_Send(coro, Py_None, &result)) {
    case PYGEN_NEXT:
        return result;
    case PYGEN_RETURN:
        Py_DECREF(result);
        Py_INCREF(args[1]);
        return args[1];
    default:
        return NULL;
    }
}

static PyMethodDef coro_methods[] = {
    {"first_step", (PyCFunction)(void (*)(void))first_step, METH_FASTCALL,
     "first_step(coro, nothing): run a coroutine to its first yield; what it yielded, or "
     "nothing when it returned."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef coro_module = {
    PyModuleDef_HEAD_INIT,
    "tickloop.runtime._coro_native",
    "The first step of a coroutine handler, in C (see the source's opening comment).",
    -1,
    coro_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__coro_native(void)
{
    PyObject *module = PyModule_Create(&coro_module);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddStringConstant(module, "SOURCE_DIGEST", TICKLOOP_SOURCE_DIGEST) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
