"""mpx's cell runner, loaded by the engine's Python kernel (crates/engine/src/kernel/python).

run_cell(src, ns, name) runs one cell with IPython's semantics and returns
("", "", repr_of_value_or_None, error_or_None), error = (ename, evalue, lineno, traceback); what
the cell prints goes to the engine as it is written (_emit), not into the result.
"""
import ast
import linecache
import signal
import sys
import threading
import traceback


_emit = None  # the engine's native writer: _emit(0 or 1, text) (set by setup)


class _Writer:
    """sys.stdout (index 0) or sys.stderr (1) of a running cell: hands what the cell writes to
    the engine, which sends it to the client while the cell runs (and makes a writer wait
    while too much is still unsent)."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self, index):
        self._index = index

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        if s:
            _emit(self._index, s)
        return len(s)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        pass

    def isatty(self):
        return False

    def writable(self):
        return True

    def readable(self):
        return False


def _lineno(exc, name):
    """The line of the cell (file `name`) where exc happened: the innermost frame in it."""
    if isinstance(exc, SyntaxError) and exc.filename == name:
        return exc.lineno
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == name:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _describe(exc, name):
    tb = exc.__traceback__
    # Drop this module's own frames (run_cell): the user sees only their code.
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next
    if isinstance(exc, SyntaxError):
        text = "".join(traceback.format_exception_only(type(exc), exc))
    else:
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    evalue = exc.msg if isinstance(exc, SyntaxError) and exc.msg else str(exc)
    return (type(exc).__name__, evalue, _lineno(exc, name), text.rstrip("\n"))


def run_cell(src, ns, name):
    """Runs `src` in namespace `ns` as file `name`: statements run, a trailing expression's
    repr is the value (and `_`)."""
    linecache.cache[name] = (len(src), None, src.splitlines(True), name)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Writer(0), _Writer(1)
    value = None
    error = None
    try:
        tree = ast.parse(src, name, "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr) and not src.rstrip().endswith(";"):
            last = ast.Expression(tree.body.pop().value)
        if tree.body:
            exec(compile(tree, name, "exec"), ns)
        if last is not None:
            v = eval(compile(last, name, "eval"), ns)
            if v is not None:
                ns["_"] = v
                value = repr(v)
    except BaseException as e:  # KeyboardInterrupt and SystemExit too: the engine goes on.
        error = _describe(e, name)
    finally:
        sys.stdout, sys.stderr = saved
    return "", "", value, error


class Returned:
    """What a function called by apply returns to send its result out of band (exported as
    ``mpx_engine.Returned``): the reply carries ``payload`` (bytes, e.g. the Python client's
    pickle) and ``arrays`` (numpy arrays of mpx's dtypes, which the payload refers to by index)
    as its buffers, instead of a displayed value. An array that nothing else refers to is sent
    from its own memory; any other is copied first (a later cell may change it)."""

    __slots__ = ("payload", "arrays")

    def __init__(self, payload, arrays=()):
        self.payload = bytes(payload)
        self.arrays = list(arrays)


def call(fn, args, ns):
    """Calls `fn` (a name in ns, or of the mpx_engine module) with args, as a cell would:
    (stdout, stderr, value, error, returned), `returned` the function's `Returned` (then there
    is no value) or None."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Writer(0), _Writer(1)
    value = None
    error = None
    returned = None
    try:
        f = ns.get(fn)
        if f is None:
            f = getattr(sys.modules.get("mpx_engine"), fn, None)
        if f is None:
            raise NameError("name %r is not defined" % fn)
        v = f(*args)
        if type(v) is Returned:
            returned = v
        elif v is not None:
            value = repr(v)
    except BaseException as e:
        error = _describe(e, "<apply>")
    finally:
        sys.stdout, sys.stderr = saved
    return "", "", value, error, returned


def restore_streams():
    """After an interrupt escaped run_cell: put the real streams back."""
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__


def where(main_ident, cell_prefixes):
    """Where the main thread is: the innermost frame of a cell or run file, and the innermost
    frame overall, as text."""
    frame = sys._current_frames().get(main_ident)
    if frame is None:
        return None
    inner = frame
    cell = None
    f = frame
    while f is not None:
        fname = f.f_code.co_filename
        if fname.startswith("<cell-") or fname in cell_prefixes:
            cell = f
            break
        f = f.f_back
    def fmt(f):
        fn = f.f_code.co_name
        fn = "" if fn == "<module>" else " in %s()" % fn
        return "%s line %d%s" % (f.f_code.co_filename, f.f_lineno, fn)
    if cell is None:
        return fmt(inner)
    if cell is inner:
        return fmt(cell)
    return "%s, now %s" % (fmt(cell), fmt(inner))


class _NoStdin:
    """sys.stdin of the engines: cells run unattended, so reading fails at once instead of
    waiting for a terminal that is not there (as IPython engines do)."""

    encoding = "utf-8"

    def _refuse(self, *args, **kwargs):
        raise EOFError("mpx cells have no standard input (input() and sys.stdin are not available)")

    read = readline = readlines = _refuse

    def isatty(self):
        return False

    def readable(self):
        return False

    def fileno(self):
        raise OSError("mpx cells have no standard input")


def _finalize_guard(*args, **kwargs):
    raise RuntimeError(
        "MPI.Finalize() is not allowed in an mpx cell: the engine finalizes MPI when it exits "
        "(mpx cluster stop)"
    )


def setup(cwd, emit):
    """Once, on the engine's main thread: Ctrl-C raises KeyboardInterrupt, the working
    directory is on sys.path, mpi4py (if installed) cannot initialise or finalize MPI under the
    engine, cells write through `emit`. Returns the main thread's ident and the version of the
    MPI library mpi4py loaded (None without mpi4py), which the engine compares with its own
    before anything else of mpi4py runs."""
    global _emit
    _emit = emit
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    sys.argv = ["mpx-engine"]
    sys.stdin = _NoStdin()
    import os
    exe = os.path.join(sys.base_exec_prefix, "bin", "python%d.%d" % sys.version_info[:2])
    if os.path.exists(exe):
        sys.executable = exe
    try:
        import numpy  # noqa: F401  (imported once here so the first cell does not pay for it)
    except ImportError:
        pass
    mpi_version = None
    try:
        import mpi4py
        # Never another MPI than the engine's: mpi4py must not initialise one of its own.
        mpi4py.rc.initialize = False
        mpi4py.rc.finalize = False
        from mpi4py import MPI
        mpi_version = MPI.Get_library_version()
        MPI.Finalize = _finalize_guard
    except ImportError:
        pass
    return threading.main_thread().ident, mpi_version


def as_array(x):
    """x as a C-contiguous little-endian numpy array: (array, dtype.str, copied)."""
    import numpy as np
    a = np.asarray(x)
    copied = a is not x
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
        copied = True
    if not a.flags.c_contiguous:
        a = a.copy(order="C")
        copied = True
    return a, a.dtype.str, copied
