"""Writes tiny CIFAR-10-format python batches for the tests (src/data/testdata/cifar10/).

The real files (cifar-10-batches-py) were written by Python 2's cPickle: a dict with a numpy uint8
array under b'data' (N x 3072: 1024 red, 1024 green, 1024 blue values, row-major) and a list under
b'labels', strings as BINSTRING. This script reproduces that byte structure without numpy: stand-in
classes reduce exactly as numpy.ndarray and numpy.dtype do, and bytes are written as Python 2 str.
Run: .venv/bin/python scripts/make_cifar_fixture.py
"""
import io, os, pickle, struct, sys, types

def _install(name, **attrs):
    module = types.ModuleType(name)
    for key, value in attrs.items():
        value.__module__ = name
        setattr(module, key, value)
    sys.modules[name] = module

class dtype:
    def __reduce__(self):
        return (dtype, ("u1", False, True), (3, "|", None, None, None, -1, -1, 0))

class ndarray:
    def __init__(self, shape, raw):
        self.shape, self.raw = shape, raw
    def __reduce__(self):
        return (_reconstruct, (ndarray, (0,), b"b"), (1, self.shape, dtype(), False, self.raw))

def _reconstruct(*args):
    raise NotImplementedError

_install("numpy", ndarray=ndarray, dtype=dtype)
_install("numpy.core.multiarray", _reconstruct=_reconstruct)

class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 str (SHORT_BINSTRING / BINSTRING), as cPickle did."""
    dispatch = dict(pickle._Pickler.dispatch)
    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)
    dispatch[bytes] = save_bytes

def image(i):
    # Channel-planar 32x32: red = i, green = x * 8, blue = y * 8.
    red = bytes([i % 256]) * 1024
    green = bytes((x * 8) % 256 for y in range(32) for x in range(32))
    blue = bytes((y * 8) % 256 for y in range(32) for x in range(32))
    return red + green + blue

def write(path, first, count):
    raw = b"".join(image(first + i) for i in range(count))
    batch = {b"batch_label": b"fixture", b"labels": [(first + i) % 10 for i in range(count)],
             b"data": ndarray((count, 3072), raw), b"filenames": [b"img%d.png" % (first + i) for i in range(count)]}
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(batch)
    with open(path, "wb") as f:
        f.write(buffer.getvalue())

out = os.path.join(os.path.dirname(__file__), "..", "src", "data", "testdata", "cifar10")
os.makedirs(out, exist_ok=True)
write(os.path.join(out, "data_batch_1"), 0, 6)
write(os.path.join(out, "test_batch"), 6, 4)
meta = {b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"], b"num_vis": 3072, b"num_cases_per_batch": 10000}
buffer = io.BytesIO()
Py2Pickler(buffer, protocol=2).dump(meta)
with open(os.path.join(out, "batches.meta"), "wb") as f:
    f.write(buffer.getvalue())
