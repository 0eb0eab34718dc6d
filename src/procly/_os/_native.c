/* procly._os._native -- a lock shared by processes on one futex word, which notices when
 * its holder died (layer 0: imports nothing from procly; the Python side passes in the
 * exception classes and the liveness probe with configure()).
 *
 * Word layout, inside a slot of shared memory (procly._sync._arena; 8-byte aligned):
 *
 *   offset  0  uint32  STATE   0 = free, else HOLDER_PID | WAITERS (bit 30: someone may sleep)
 *   offset  8  int64   TOKEN   holder's token (start_time << 22 | pid, see procly._sync._owner)
 *   offset 16  int64   REPAIRS how many abandoned holds were reset (diagnostics)
 *
 * Taking the lock is one compare-and-swap of STATE from 0 to our pid (acquire ordering),
 * with no system call and the GIL kept; then TOKEN is written.  Releasing clears TOKEN and
 * exchanges STATE to 0 (release ordering: whoever takes the lock next sees every write made
 * under it), and calls FUTEX_WAKE for one sleeper only if WAITERS was set.  A contender sets
 * WAITERS with a CAS and sleeps in FUTEX_WAIT (shared, not PRIVATE: the word is in memory
 * mapped by several processes) on exactly the value it saw, so a release in between makes
 * the kernel return at once (no lost wake-up).  A woken contender takes the lock with
 * WAITERS set, since other sleepers may remain (Drepper, "Futexes are tricky", mutex 2).
 *
 * Owner death.  Because the holder's pid is in STATE itself, there is no window in which a
 * lock is held by nobody known (the pure path has one).  A contender sleeps in slices of
 * CHECK_INTERVAL; on entry (a failed try-acquire included) and after each slice that ended
 * without a wake-up it asks the probe whether the holder lives (a zombie or a reused pid counts as dead: the probe compares start times
 * when TOKEN belongs to the pid in STATE; before the holder wrote TOKEN only the pid is
 * asked).  If dead, it CASes that very hold (pid unchanged) to 0 -- exactly one contender
 * wins -- wakes every sleeper and raises OwnerDiedError(pid=...).  The lock is then free.
 * Residual race (documented, not handled): the dead pid reused by a process that takes
 * this lock between the probe and the CAS.
 *
 * Per-process state: our pid and token (set from Python, reset to the bare pid in a forked
 * child by a pthread_atfork handler before any Python code runs there).  RLock ownership
 * (thread id, recursion count) lives in the object: only the owner touches it, and after a
 * fork STATE names the parent, so the child's copy counts as not owned.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#ifndef __linux__
#error "procly._os._native needs Linux futexes; elsewhere procly uses its pure path"
#endif

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PID_MASK 0x003FFFFFu /* Linux pids are below 2**22 */
#define WAITERS 0x40000000u
#define SLOT_BYTES 24

static uint32_t my_pid;
static int64_t my_token;
static PyObject *owner_died_error; /* procly.errors.OwnerDiedError */
static PyObject *not_owned_error;  /* procly.errors.LockNotOwnedError */
static PyObject *is_alive;         /* callable(token) -> bool */
static double check_interval = 0.1;

static void after_fork_child(void) {
    my_pid = (uint32_t)getpid();
    my_token = (int64_t)my_pid; /* start time unknown until Python refreshes it */
}

typedef struct {
    PyObject_HEAD
    uint32_t *state;
    int64_t *token;
    int64_t *repairs;
    Py_buffer view;
    int recursive;
    Py_ssize_t count;        /* levels held by owner_tid of this process */
    unsigned long owner_tid; /* meaningful only while count > 0 */
} SharedLock;

static long futex(uint32_t *addr, int op, uint32_t val, const struct timespec *ts) {
    return syscall(SYS_futex, addr, op, val, ts, NULL, 0);
}

static double monotonic(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int ready(SharedLock *s) {
    if (s->state == NULL)
        PyErr_SetString(PyExc_ValueError, "lock is not attached to shared memory");
    return s->state != NULL;
}

static inline uint32_t load_state(SharedLock *s) {
    return __atomic_load_n(s->state, __ATOMIC_ACQUIRE);
}

static inline int cas_state(SharedLock *s, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n(s->state, &expected, desired, 0, __ATOMIC_ACQUIRE,
                                       __ATOMIC_RELAXED);
}

static inline void took(SharedLock *s, unsigned long tid) {
    __atomic_store_n(s->token, my_token, __ATOMIC_RELAXED);
    s->owner_tid = tid;
    s->count = 1;
}

static inline int is_mine(SharedLock *s, unsigned long tid) {
    return s->count > 0 && s->owner_tid == tid && (load_state(s) & PID_MASK) == my_pid;
}

/* Clear TOKEN and free STATE; wakes one sleeper if any.  Returns the previous STATE. */
static uint32_t free_word(SharedLock *s) {
    __atomic_store_n(s->token, 0, __ATOMIC_RELAXED);
    uint32_t old = __atomic_exchange_n(s->state, 0, __ATOMIC_RELEASE);
    if (old & WAITERS)
        futex(s->state, FUTEX_WAKE, 1, NULL);
    return old;
}

/* The hold recorded in w: if its process is dead, reset it (once) and raise.
 * Returns -1 with OwnerDiedError (or the probe's error) set, 0 otherwise. */
static int check_abandoned(SharedLock *s, uint32_t w) {
    uint32_t pid = w & PID_MASK, cur;
    if (pid == 0 || pid == my_pid || is_alive == NULL)
        return 0;
    int64_t tok = __atomic_load_n(s->token, __ATOMIC_ACQUIRE);
    if ((uint32_t)(tok & PID_MASK) != pid)
        tok = pid; /* TOKEN not written yet (or stale): ask about the pid alone */
    PyObject *res = PyObject_CallFunction(is_alive, "L", (long long)tok);
    if (res == NULL)
        return -1;
    int alive = PyObject_IsTrue(res);
    Py_DECREF(res);
    if (alive != 0)
        return alive < 0 ? -1 : 0;
    do { /* reset exactly this hold; only WAITERS may change under us */
        cur = load_state(s);
        if ((cur & PID_MASK) != pid)
            return 0; /* repaired by someone else, or released */
    } while (!cas_state(s, cur, 0));
    __atomic_compare_exchange_n(s->token, &tok, 0, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    __atomic_add_fetch(s->repairs, 1, __ATOMIC_RELAXED);
    if (cur & WAITERS)
        futex(s->state, FUTEX_WAKE, INT_MAX, NULL); /* let every sleeper re-evaluate */
    PyObject *exc = NULL, *msg = PyUnicode_FromFormat(
        "process %u died while holding %s without releasing it; the lock has been "
        "released, the data it protected may be inconsistent", pid, Py_TYPE(s)->tp_name);
    if (msg != NULL) {
        PyObject *args = PyTuple_Pack(1, msg), *kw = Py_BuildValue("{s:I}", "pid", pid);
        if (args != NULL && kw != NULL)
            exc = PyObject_Call(owner_died_error, args, kw);
        Py_XDECREF(args);
        Py_XDECREF(kw);
        Py_DECREF(msg);
    }
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return -1;
}

/* Contended path: 1 taken, 0 not taken (non-blocking / timed out), -1 exception set.
 * timeout < 0 means no deadline. */
static int acquire_slow(SharedLock *s, unsigned long tid, int block, double timeout) {
    double deadline = timeout >= 0 ? monotonic() + timeout : 0;
    int check = 1;
    for (;;) {
        uint32_t w = load_state(s);
        if (w == 0) {
            if (cas_state(s, 0, my_pid | WAITERS)) {
                took(s, tid);
                return 1;
            }
            continue;
        }
        if (check) { /* on entry, and after each slice that no wake-up cut short */
            check = 0;
            if (check_abandoned(s, w) < 0)
                return -1;
        }
        if (!block)
            return 0;
        double wait = check_interval;
        if (timeout >= 0) {
            double left = deadline - monotonic();
            if (left <= 0)
                return 0;
            if (left < wait)
                wait = left;
        }
        if (!(w & WAITERS)) {
            if (!cas_state(s, w, w | WAITERS))
                continue;
            w |= WAITERS;
        }
        struct timespec ts;
        ts.tv_sec = (time_t)wait;
        ts.tv_nsec = (long)((wait - (double)ts.tv_sec) * 1e9);
        long rc;
        int err;
        Py_BEGIN_ALLOW_THREADS
        rc = futex(s->state, FUTEX_WAIT, w, &ts);
        err = errno;
        Py_END_ALLOW_THREADS
        if (PyErr_CheckSignals() < 0)
            return -1; /* e.g. KeyboardInterrupt while blocked */
        check = rc == -1 && err == ETIMEDOUT;
    }
}

/* acquire(block=True, timeout=None): parse without building tuples or dicts. */
static int parse_acquire(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                         int *block, double *timeout) {
    PyObject *b = NULL, *t = NULL;
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError, "acquire() takes at most 2 arguments (%zd given)", nargs);
        return -1;
    }
    b = nargs > 0 ? args[0] : NULL;
    t = nargs > 1 ? args[1] : NULL;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i), **dst;
        if (PyUnicode_CompareWithASCIIString(name, "block") == 0)
            dst = &b;
        else if (PyUnicode_CompareWithASCIIString(name, "timeout") == 0)
            dst = &t;
        else {
            PyErr_Format(PyExc_TypeError, "acquire() got an unexpected keyword argument '%U'",
                         name);
            return -1;
        }
        if (*dst != NULL) {
            PyErr_Format(PyExc_TypeError, "acquire() got multiple values for argument '%U'",
                         name);
            return -1;
        }
        *dst = args[nargs + i];
    }
    *block = 1;
    if (b != NULL && (*block = PyObject_IsTrue(b)) < 0)
        return -1;
    *timeout = -1;
    if (t != NULL && t != Py_None) {
        PyNumberMethods *nb = Py_TYPE(t)->tp_as_number;
        if (!PyFloat_Check(t) && !PyLong_Check(t) && (nb == NULL || nb->nb_float == NULL)) {
            PyErr_Format(PyExc_TypeError, "timeout must be a number or None, not %s",
                         Py_TYPE(t)->tp_name);
            return -1;
        }
        double v = PyFloat_AsDouble(t);
        if (v == -1.0 && PyErr_Occurred())
            return -1;
        *timeout = v > 0 ? v : 0; /* negative (or NaN) means "do not wait", as the stdlib */
    }
    return 0;
}

static PyObject *do_acquire(SharedLock *s, int block, double timeout) {
    unsigned long tid = PyThread_get_thread_ident();
    if (s->recursive && is_mine(s, tid)) {
        s->count++;
        Py_RETURN_TRUE;
    }
    if (cas_state(s, 0, my_pid)) { /* the fast path: one CAS */
        took(s, tid);
        Py_RETURN_TRUE;
    }
    int r = acquire_slow(s, tid, block, timeout);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(r);
}

static PyObject *lock_acquire(SharedLock *s, PyObject *const *args, Py_ssize_t nargs,
                              PyObject *kwnames) {
    int block;
    double timeout;
    if (!ready(s) || parse_acquire(args, nargs, kwnames, &block, &timeout) < 0)
        return NULL;
    return do_acquire(s, block, timeout);
}

static PyObject *lock_enter(SharedLock *s, PyObject *unused) {
    return ready(s) ? do_acquire(s, 1, -1) : NULL;
}

static PyObject *lock_release(SharedLock *s, PyObject *unused) {
    if (!ready(s))
        return NULL;
    if (s->recursive) {
        if (!is_mine(s, PyThread_get_thread_ident())) {
            PyErr_SetString(not_owned_error ? not_owned_error : PyExc_AssertionError,
                            "attempt to release recursive lock not owned by thread");
            return NULL;
        }
        if (--s->count == 0)
            free_word(s);
        Py_RETURN_NONE;
    }
    /* A plain Lock may be released by any thread or process, like the stdlib's. */
    s->count = 0;
    if (load_state(s) == 0 || free_word(s) == 0) {
        PyErr_SetString(PyExc_ValueError, "semaphore or lock released too many times");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *lock_exit(SharedLock *s, PyObject *const *args, Py_ssize_t nargs) {
    return lock_release(s, NULL);
}

static PyObject *lock_is_mine(SharedLock *s, PyObject *unused) {
    return ready(s) ? PyBool_FromLong(is_mine(s, PyThread_get_thread_ident())) : NULL;
}

static PyObject *lock_release_save(SharedLock *s, PyObject *unused) {
    if (!ready(s))
        return NULL;
    Py_ssize_t count = s->count;
    s->count = 0;
    free_word(s);
    return PyLong_FromSsize_t(count);
}

static PyObject *lock_holder(SharedLock *s, PyObject *unused) {
    return ready(s) ? Py_BuildValue("(IL)", load_state(s) & PID_MASK,
                                    (long long)__atomic_load_n(s->repairs, __ATOMIC_RELAXED))
                    : NULL;
}

static int lock_init(SharedLock *s, PyObject *args, PyObject *kw) {
    static char *names[] = {"buffer", "offset", "recursive", NULL};
    PyObject *buf;
    Py_ssize_t offset;
    int recursive = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "On|p:SharedLock", names, &buf, &offset,
                                     &recursive))
        return -1;
    Py_buffer view;
    if (PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) < 0)
        return -1;
    if (offset < 0 || offset % 8 || offset > view.len - SLOT_BYTES ||
        ((uintptr_t)view.buf + (uintptr_t)offset) % 8) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "offset must leave 24 aligned bytes in the buffer");
        return -1;
    }
    if (s->state != NULL)
        PyBuffer_Release(&s->view);
    s->view = view;
    s->state = (uint32_t *)((char *)view.buf + offset);
    s->token = (int64_t *)((char *)view.buf + offset + 8);
    s->repairs = (int64_t *)((char *)view.buf + offset + 16);
    s->recursive = recursive;
    s->count = 0;
    s->owner_tid = 0;
    return 0;
}

static void lock_dealloc(SharedLock *s) {
    if (s->state != NULL)
        PyBuffer_Release(&s->view);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyMethodDef lock_methods[] = {
    {"acquire", (PyCFunction)(void (*)(void))lock_acquire, METH_FASTCALL | METH_KEYWORDS,
     "acquire(block=True, timeout=None) -> bool"},
    {"release", (PyCFunction)lock_release, METH_NOARGS, "release() -> None"},
    {"__enter__", (PyCFunction)lock_enter, METH_NOARGS, "acquire() -> True"},
    {"__exit__", (PyCFunction)(void (*)(void))lock_exit, METH_FASTCALL, "release()"},
    {"_is_mine", (PyCFunction)lock_is_mine, METH_NOARGS,
     "Whether the calling thread of this process holds the lock."},
    {"_release_save", (PyCFunction)lock_release_save, METH_NOARGS,
     "Release every level; return how many there were."},
    {"_holder", (PyCFunction)lock_holder, METH_NOARGS, "(holder pid or 0, repairs)"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef lock_members[] = {
    {"_count", T_PYSSIZET, offsetof(SharedLock, count), 0, "levels held in this process"},
    {"_owner_tid", T_ULONG, offsetof(SharedLock, owner_tid), 0, "owning thread ident"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject SharedLockType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "procly._os._native.SharedLock",
    .tp_doc = "SharedLock(buffer, offset, recursive=False): a futex lock in shared memory.",
    .tp_basicsize = sizeof(SharedLock),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)lock_init,
    .tp_dealloc = (destructor)lock_dealloc,
    .tp_methods = lock_methods,
    .tp_members = lock_members,
};

static PyObject *configure(PyObject *mod, PyObject *args, PyObject *kw) {
    static char *names[] = {"owner_died", "not_owned", "is_alive", "check_interval", NULL};
    PyObject *od, *no, *alive;
    double interval;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "$OOOd:configure", names, &od, &no, &alive,
                                     &interval))
        return NULL;
    if (!PyExceptionClass_Check(od) || !PyExceptionClass_Check(no) || !PyCallable_Check(alive)
        || !(interval > 0)) {
        PyErr_SetString(PyExc_TypeError, "configure() needs two exception classes, a "
                                         "callable and a positive check_interval");
        return NULL;
    }
    Py_INCREF(od);
    Py_INCREF(no);
    Py_INCREF(alive);
    Py_XSETREF(owner_died_error, od);
    Py_XSETREF(not_owned_error, no);
    Py_XSETREF(is_alive, alive);
    check_interval = interval;
    Py_RETURN_NONE;
}

static PyObject *set_identity(PyObject *mod, PyObject *args) {
    unsigned int pid;
    long long token;
    if (!PyArg_ParseTuple(args, "IL:set_identity", &pid, &token))
        return NULL;
    if (pid == 0 || pid > PID_MASK || (uint32_t)(token & PID_MASK) != pid) {
        PyErr_SetString(PyExc_ValueError, "token must carry the pid in its low 22 bits");
        return NULL;
    }
    my_pid = pid;
    my_token = token;
    Py_RETURN_NONE;
}

static PyObject *identity(PyObject *mod, PyObject *unused) {
    return Py_BuildValue("(IL)", my_pid, (long long)my_token);
}

/* Bare pthread_mutex_trylock / pthread_mutex_unlock on a mutex at an address (procly._queues'
 * robust process-shared ring mutex).  Neither blocks, so the GIL is kept: a METH_O call costs
 * ~40 ns where the same call through ctypes costs ~200 ns, on every put and get.  Return the
 * pthread result (0 or an errno: EBUSY, EOWNERDEAD -- the caller then owns the mutex and must
 * make it consistent). */
static PyObject *mutex_trylock(PyObject *mod, PyObject *addr) {
    void *p = PyLong_AsVoidPtr(addr);
    if (p == NULL && PyErr_Occurred())
        return NULL;
    if (p == NULL) {
        PyErr_SetString(PyExc_ValueError, "mutex address must not be 0");
        return NULL;
    }
    return PyLong_FromLong(pthread_mutex_trylock((pthread_mutex_t *)p));
}

static PyObject *mutex_unlock(PyObject *mod, PyObject *addr) {
    void *p = PyLong_AsVoidPtr(addr);
    if (p == NULL && PyErr_Occurred())
        return NULL;
    if (p == NULL) {
        PyErr_SetString(PyExc_ValueError, "mutex address must not be 0");
        return NULL;
    }
    return PyLong_FromLong(pthread_mutex_unlock((pthread_mutex_t *)p));
}

/* prctl(PR_SET_PDEATHSIG, sig) for procly's lifeline (procly._proc._lifeline): a child just
 * forked asks the kernel to kill it when the thread that forked it exits.  Called on every
 * child start; through ctypes the call costs the new child some twenty copy-on-write page
 * faults (the objects of ctypes and libffi it touches), here none.  Returns 0 or an errno
 * (ENOSYS where there is no such call). */
static PyObject *set_pdeathsig(PyObject *mod, PyObject *arg) {
    long sig = PyLong_AsLong(arg);
    if (sig == -1 && PyErr_Occurred())
        return NULL;
#ifdef __linux__
    if (prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0UL, 0UL, 0UL) != 0)
        return PyLong_FromLong(errno);
    return PyLong_FromLong(0);
#else
    return PyLong_FromLong(ENOSYS);
#endif
}

static PyMethodDef module_methods[] = {
    {"set_pdeathsig", set_pdeathsig, METH_O, "set_pdeathsig(signal) -> 0 or errno"},
    {"mutex_trylock", mutex_trylock, METH_O, "mutex_trylock(address) -> 0 or errno"},
    {"mutex_unlock", mutex_unlock, METH_O, "mutex_unlock(address) -> 0 or errno"},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_VARARGS | METH_KEYWORDS,
     "configure(*, owner_died, not_owned, is_alive, check_interval)"},
    {"set_identity", set_identity, METH_VARARGS, "set_identity(pid, token)"},
    {"identity", identity, METH_NOARGS, "identity() -> (pid, token)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "procly._os._native",
    "A process-shared futex lock with owner-death detection (see the C source header).", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__native(void) {
    if (PyType_Ready(&SharedLockType) < 0)
        return NULL;
    after_fork_child();
    if (pthread_atfork(NULL, NULL, after_fork_child) != 0) {
        PyErr_SetString(PyExc_OSError, "pthread_atfork failed");
        return NULL;
    }
    PyObject *m = PyModule_Create(&native_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&SharedLockType);
    if (PyModule_AddObject(m, "SharedLock", (PyObject *)&SharedLockType) < 0 ||
        PyModule_AddIntConstant(m, "SLOT_BYTES", SLOT_BYTES) < 0) {
        Py_DECREF(&SharedLockType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
