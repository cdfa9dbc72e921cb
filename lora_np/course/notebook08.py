"""Notebook 08's exercises and checkers (registered with :func:`lora_np.course.exercises.register`).

Every right answer is computed here from the quantities in its question:

* the bytes of a LoRA adapter: layers · matrices · r·(d_in + d_out) numbers · bytes per number;
  a MiB is 2²⁰ bytes;
* a tiny model's training step is a few hundred small kernels: on a GPU each costs a launch of
  microseconds, more than its arithmetic, so the GPU does not win at that size;
* arrays live on one device: a host (NumPy) array mixed into a device computation is refused;
* code: ``one_hot(y, n_classes)`` built on the device of ``y`` (``xp = backend.get_array_module(y)``).
"""
from __future__ import annotations

from .. import backend
from .exercises import Exercise, choice_of, numeric, register

MIB = 2 ** 20

# ------------------------------------------------------------------ computation: an adapter's bytes
LAYERS, WIDTH, R, N_MATRICES, FP32 = 32, 4096, 8, 2, 4         # LLaMA-7B's q and v, r = 8, fp32 adapter
ADAPTER_PARAMS = LAYERS * N_MATRICES * R * (WIDTH + WIDTH)
ADAPTER_MIB = ADAPTER_PARAMS * FP32 / MIB
MODEL_7B_FP16_GIB = 7e9 * 2 / 2 ** 30
COUNT_HINT = ("count r·(d_in + d_out) numbers per adapted matrix, two matrices per layer, every layer, "
              "4 bytes each, then divide by 2²⁰")

# ------------------------------------------------------------------ predictions
GPU_SMALL_OPTIONS = {
    "a": "(a) about 100 times faster: a GPU has thousands of cores;",
    "b": "(b) not faster, maybe slower: the step is too little arithmetic to pay for launching its kernels;",
    "c": "(c) about 10 times faster: less than its peak, but still clearly faster;",
    "d": "(d) it cannot run: a model this small does not fit the GPU's way of working.",
}
GPU_SMALL_ANSWER = "b"
MIX_OPTIONS = {
    "a": "(a) it works: the library converts the NumPy array for you;",
    "b": "(b) it raises a TypeError: a host array meets device weights;",
    "c": "(c) it works but is slow, because the array is copied at every layer;",
    "d": "(d) it returns NumPy logits, because the input was a NumPy array.",
}
MIX_ANSWER = "b"


# ------------------------------------------------------------------ code: a backend-agnostic one-hot
def one_hot(y, n_classes):
    """y: (N,) integer labels on any device -> (N, n_classes) floats on the same device, 1 at (i, y[i])."""
    xp = backend.get_array_module(y)                                  # numpy, cupy or the emulated device
    out = xp.zeros((y.shape[0], n_classes), dtype=backend.default_dtype())   # (N, C) on y's device
    out[xp.arange(y.shape[0]), y] = 1                                 # (N,) rows, (N,) columns
    return out


ONE_HOT_SOLUTION = '''def one_hot(y, n_classes):
    xp = backend.get_array_module(y)                                  # the namespace of y's device
    out = xp.zeros((y.shape[0], n_classes), dtype=backend.default_dtype())   # (N, C) on y's device
    out[xp.arange(y.shape[0]), y] = 1
    return out'''


def check_one_hot(fn) -> tuple[bool, str]:
    """Run the learner's ``one_hot`` on NumPy labels, then on labels on the emulated device (which
    refuses what CuPy refuses), and name the first thing that is wrong; the reference is never shown."""
    if not callable(fn):
        return False, "pass your function itself, `one_hot`, without calling it"
    labels = [2, 0, 1, 2, 4, 3]
    n_classes = 5
    for name in ("numpy", "emulated"):
        with backend.use_backend(name):
            y = backend.asarray(labels, dtype="int64")                # (5,) on this device
            want = backend.to_numpy(one_hot(y, n_classes))            # (5, 5) host
            where = "NumPy labels" if name == "numpy" else "labels on the (emulated) device"
            try:
                got = fn(y, n_classes)
            except NotImplementedError:
                return False, "not written yet: replace `raise NotImplementedError` by your code"
            except TypeError as exc:
                if name == "emulated":
                    return False, (f"with {where} it raised TypeError: {exc} A NumPy array met a device "
                                   "array: create arrays with xp = backend.get_array_module(y), not np")
                return False, f"with {where} it raised TypeError: {exc}"
            except Exception as exc:                                  # the learner's code: name it
                return False, f"with {where} it raised {type(exc).__name__}: {exc}"
            if got is None:
                return False, "it returned None: is the `return` missing?"
            if not backend.is_array(got):
                return False, f"return an array, not a {type(got).__name__}"
            if name == "emulated" and backend.get_array_module(got) is not backend.get_array_module(y):
                return False, ("with labels on the device, the result came back on the host: build it with "
                               "xp = backend.get_array_module(y), and do not call to_numpy inside")
            host = backend.to_numpy(got)
            if host.shape == want.shape[::-1] and host.shape != want.shape:
                return False, f"shape {host.shape}: one row per label, (N, n_classes), not transposed"
            if host.shape != want.shape:
                return False, f"shape {host.shape} for N = {len(labels)} labels: it must be (N, n_classes)"
            if host.dtype.kind != "f":
                return False, (f"dtype {host.dtype}: the one-hot is subtracted from float probabilities, so "
                               "make it a float array (backend.default_dtype())")
            if not (host == want).all():
                return False, "the values are not 1 at (i, y[i]) and 0 everywhere else"
    return True, ("right: the same code on NumPy and on the device, because it asks the backend for its "
                  "namespace instead of importing one")


EXERCISES_08: dict[str, Exercise] = {
    "adapter_transfer_mib": Exercise(
        prompt=(f"A LoRA adapter of rank r = {R} on the q and v projections of a {LAYERS}-layer model of "
                f"width {WIDTH} (each projection {WIDTH} × {WIDTH}) is stored in fp32, 4 bytes per number. "
                "How many MiB (2²⁰ bytes) are copied from host to GPU to load it? (within 1 %)"),
        answer=ADAPTER_MIB,
        check=numeric(ADAPTER_MIB, rel_tol=0.01, mistakes=[
            (ADAPTER_MIB / 2, "half of it: count both factors (A and B), both projections, and 4 bytes per "
                              "fp32 number"),
            (ADAPTER_MIB / LAYERS, "that is one layer's adapter; every layer has its own"),
            (ADAPTER_PARAMS * FP32 / 1e6, "that is in MB (10⁶ bytes); a MiB is 2²⁰ bytes"),
            (ADAPTER_PARAMS * FP32, "that is in bytes; divide by 2²⁰ bytes per MiB"),
            (ADAPTER_PARAMS / MIB, "that counts one byte per number; fp32 stores 4"),
            (LAYERS * N_MATRICES * WIDTH * WIDTH * FP32 / MIB,
             "that is the size of the full q and v weights; the adapter stores r·(d_in + d_out) per matrix"),
        ], too_large=COUNT_HINT, too_small=COUNT_HINT,
           right="right: swapping adapters on a GPU moves megabytes, while the frozen model (gigabytes) "
                 "stays"),
        solution=(f"Per matrix r·(d_in + d_out) = {R}·({WIDTH} + {WIDTH}) = {R * 2 * WIDTH:,} numbers; "
                  f"{N_MATRICES} matrices per layer, {LAYERS} layers: {ADAPTER_PARAMS:,} numbers; "
                  f"× {FP32} bytes = {ADAPTER_PARAMS * FP32:,} bytes = {ADAPTER_MIB:.2f} MiB. "
                  f"The frozen 7B model in fp16 is "
                  f"≈ {MODEL_7B_FP16_GIB:.1f} GiB, about {MODEL_7B_FP16_GIB * 1024 / ADAPTER_MIB:.0f} times "
                  "more: it is copied to the GPU once, and adapters can then be swapped cheaply. (Copy speed "
                  "depends on the machine's PCIe or NVLink link: nothing here measures it.)"),
    ),
    "predict_gpu_small_mlp": Exercise(
        prompt=("One training step (forward, backward, Adam) of this course's fruit MLP, 20 → 256 → 256 → 10 "
                "on a batch of 32, on a data-centre GPU with CuPy, against NumPy on one laptop core. What "
                "do you expect?\n" + "\n".join(GPU_SMALL_OPTIONS.values())),
        answer=GPU_SMALL_ANSWER,
        check=choice_of(GPU_SMALL_ANSWER, options={
            "a": ("no: count the arithmetic of one step (a few million multiply-adds) and the number of "
                  "operations it takes; a GPU's cores help only when each operation has a lot of work"),
            "b": "",
            "c": ("no: ask what each of the step's few hundred operations costs on a GPU before any "
                  "arithmetic is done"),
            "d": ("no: it runs, and gives the same predictions; the question is what it costs per "
                  "operation"),
        }, right=("right: a few million multiply-adds spread over hundreds of tiny kernels; each launch "
                  "costs microseconds, more than its arithmetic, so the GPU wins only at larger sizes")),
        solution=("One step does about 3 × 32 × (20·256 + 256·256 + 256·10) ≈ 7 million multiply-adds, which "
                  "one CPU core does in about a millisecond, in a few hundred array operations (forward, "
                  "backward and Adam for every parameter). On a GPU each operation is a kernel launch that "
                  "costs several microseconds whatever its size, plus Python's own overhead: the step is "
                  "dominated by launches, so the GPU is not faster, and can be slower (b). It pulls ahead "
                  "when each operation has enough work, e.g. widths in the thousands and thousands of rows "
                  "per batch. This notebook has no GPU to show it: benchmarks/gpu_check.py measures it on "
                  "one."),
    ),
    "predict_mixed_input": Exercise(
        prompt=("You move a model to the emulated device, model.to('emulated') (on a GPU: 'cupy'), and call "
                "it on a NumPy array X. What happens?\n" + "\n".join(MIX_OPTIONS.values())),
        answer=MIX_ANSWER,
        check=choice_of(MIX_ANSWER, options={
            "a": ("no: CuPy refuses implicit conversions between host and device, so that a silent copy "
                  "never hides in a loop; the emulated device refuses exactly the same"),
            "b": "",
            "c": ("no: nothing is copied behind your back; a copy has to be asked for "
                  "(backend.to_device or backend.asarray)"),
            "d": ("no: the weights live on the device, so the product cannot be computed on the host without "
                  "copying them back, which is not done behind your back"),
        }, right=("right: move the data too (backend.to_device(X) or task.to(name)); try it in a new cell, "
                  "inside `with backend.use_backend('emulated'):`")),
        solution=("The first layer computes X @ W0ᵀ with X a NumPy (host) array and W0 a device array. CuPy "
                  "refuses to mix the two (TypeError) rather than copying silently, and the emulated device "
                  "refuses exactly the same, so the test suite catches such a leak without a GPU (b). "
                  "Move the data first: backend.to_device(X) or task.to('emulated')."),
    ),
    "one_hot_any_backend": Exercise(
        prompt=("Write one_hot(y, n_classes): y is an (N,) integer array on any device (NumPy, CuPy or the "
                "emulated one); return an (N, n_classes) float array on the same device, with 1 at (i, y[i]) "
                "and 0 elsewhere. Pass the function itself to the checker."),
        answer=one_hot,
        check=check_one_hot,
        solution=(ONE_HOT_SOLUTION + "\n\nbackend.get_array_module(y) returns the namespace of y's device "
                  "(numpy, cupy, or the emulated one), so every array is created where y lives; np.zeros "
                  "would create a host array, which a device refuses to mix with y. The library's softmax "
                  "cross-entropy backward subtracts the one-hot target the same way, indexing with xp.arange "
                  "from the labels' own namespace (lora_np/functional/dense.py)."),
    ),
}

register(EXERCISES_08)
