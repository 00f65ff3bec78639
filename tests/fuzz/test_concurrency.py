"""Concurrency (issue 17, item 6): two models trained from two threads at once end with the
bit-identical weights, statistics and solver state of training them one after the other, and
apply_dl_model on one model from several threads at once gives one thread's results, with BLAS
left at its own thread count (nothing pinned). The models are large enough that the numpy
kernels use their helper threads and buffer pools, and that OpenBLAS rounds their largest GEMM
(128 x 577 @ 577 x 128) differently with one and with two threads."""
from __future__ import annotations

import importlib.util
import threading

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import dlbatch
from dlbatch.backends.numpy_cpu import buffers, parallel

from .models import make_model, valid_batch

STEPS = 3
THREADS = 4
HAS_TORCH = importlib.util.find_spec("torch") is not None
BACKENDS = ["numpy", pytest.param("torch", marks=pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed"))]


def models(backend: str = "numpy"):
    """Different models (and a second of the same type with another seed). The numpy ones are
    32 x 32 x 3 (large enough for the kernels' threads and pools); for torch, two of the tiniest
    (a torch step costs more than a numpy one, and neither size nor count changes how torch
    shares state between threads)."""
    if backend == "torch":
        return [make_model("classification", backend, batch_size=4, seed=5),
                make_model("rectangle1", backend, batch_size=2, seed=7)]
    size = dict(image_dimensions=[32, 32, 3])
    return [make_model("classification", backend, batch_size=4, seed=5, **size),
            make_model("segmentation", backend, batch_size=2, seed=6, **size),
            make_model("rectangle1", backend, batch_size=2, seed=7, **size),
            make_model("classification", backend, batch_size=4, seed=8, solver_type="adam", **size)]


def dropout_classifier(path) -> str:
    """An imported classifier with a Dropout (ratio 0.5) before its head: every train step draws
    a mask from the backend's generator, seeded per step from the model's seed."""
    rng = np.random.default_rng(0)

    def t(name, a):
        return numpy_helper.from_array(np.asarray(a, np.float32), name)

    inits = [t("w", rng.normal(0, 0.3, (8, 3, 3, 3))), t("b", np.zeros(8)), t("fw", rng.normal(0, 0.3, (8, 3))),
             t("fb", np.zeros(3)), t("ratio", np.array(0.5))]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
             helper.make_node("Relu", ["c"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("Dropout", ["f", "ratio"], ["d"]),
             helper.make_node("Gemm", ["d", "fw", "fb"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "dropout_classifier",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return str(path)


def dropout_models(path: str, backend: str):
    return [dlbatch.read_dl_model(path, backend=backend, batch_size=4, seed=seed, learning_rate=0.01)
            for seed in (5, 6, 7)]


def train(model, batches) -> None:
    for b in batches:
        model.train_batch(b)


def run_threads(targets) -> None:
    """Start every target together (a barrier) and re-raise the first error."""
    barrier = threading.Barrier(len(targets))
    errors: list[BaseException] = []

    def run(fn):
        try:
            barrier.wait()
            fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(fn,)) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


def state_bytes(model) -> dict[str, bytes]:
    out = {f"w:{k}": np.asarray(v).tobytes() for k, v in model.state_dict().items()}
    out.update({f"s:{k}": np.asarray(v).tobytes() for k, v in model.solver_state_dict().items()})
    return out


def assert_concurrent_training_equals_sequential(make) -> None:
    sequential, concurrent = make(), make()
    batches = [[valid_batch(m, seed=100 * i + s) for s in range(STEPS)] for i, m in enumerate(sequential)]
    for m, b in zip(sequential, batches):
        train(m, b)
    run_threads([lambda m=m, b=b: train(m, b) for m, b in zip(concurrent, batches)])
    for i, (a, b) in enumerate(zip(sequential, concurrent)):
        sa, sb = state_bytes(a), state_bytes(b)
        assert sa.keys() == sb.keys()
        differ = [k for k in sa if sa[k] != sb[k]]
        assert not differ, f"model {i}: {differ[:5]} differ after concurrent training"


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_models_from_threads_at_once_equals_training_them_one_after_the_other(backend):
    assert_concurrent_training_equals_sequential(lambda: models(backend))


@pytest.mark.parametrize("backend", BACKENDS)
def test_training_dropout_models_from_threads_at_once_equals_training_them_one_after_the_other(backend, tmp_path):
    """One backend object serves every model: each thread must draw its masks from its own
    model's seed, whatever the other threads seed meanwhile."""
    path = dropout_classifier(tmp_path / "dropout.onnx")
    assert_concurrent_training_equals_sequential(lambda: dropout_models(path, backend))


def result_key(result: dict) -> tuple:
    return tuple((k, np.asarray(v).tobytes() if not isinstance(v, list) else repr(v)) for k, v in sorted(result.items()))


@pytest.mark.parametrize("kind", ["classification", "segmentation", "rectangle2"])
def test_apply_from_several_threads_at_once_equals_one_thread(kind):
    assert_apply_is_thread_safe(kind)


def test_apply_from_other_threads_equals_the_main_thread_while_it_holds_a_threadpoolctl_limit():
    """The cause of the 1-3 ulp differences: since threadpoolctl 3.8, OpenBLAS limits set
    through threadpoolctl from any thread but the one that set a limit first are ignored. The
    numpy backend used that to make BLAS single-threaded for a program run, so a run in another
    thread kept two BLAS threads (and other rounding) while the main thread held a limit, or had
    once run a program itself. The backend now sets OpenBLAS directly."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    ctl = parallel._blas_ctl()
    if not ctl.shared:
        pytest.skip("no process-wide BLAS thread setting to check")
    with threadpoolctl.threadpool_limits(limits=2, user_api="blas"):  # the main thread holds control
        if ctl.get() != 2:
            pytest.skip("BLAS cannot run two threads here")
        seen = {}

        def look():
            with parallel.blas_single_threaded():
                seen["inside"] = ctl.get()
            seen["after"] = ctl.get()

        run_threads([look])
        assert seen == {"inside": 1, "after": 2}, "a program run in a second thread would compute with other BLAS"
        assert_apply_is_thread_safe("classification")


def assert_apply_is_thread_safe(kind):
    model = make_model(kind, image_dimensions=[32, 32, 3], batch_size=2)
    model.train_batch(valid_batch(model, seed=1))
    batches = [valid_batch(model, seed=200 + t, n=3) for t in range(THREADS)]
    alone = [[result_key(r) for r in dlbatch.apply_dl_model(model, b)] for b in batches]
    together: list = [None] * THREADS

    def apply(t):
        for _ in range(STEPS):  # repeated, so the calls overlap
            together[t] = [result_key(r) for r in dlbatch.apply_dl_model(model, batches[t])]

    run_threads([lambda t=t: apply(t) for t in range(THREADS)])
    for t in range(THREADS):
        assert together[t] == alone[t], f"thread {t} got other results than one thread alone"


def test_helper_threads_run_chunks_under_the_callers_numpy_error_state():
    """np.errstate is per thread (a context variable): a chunk that a helper thread runs must
    see the caller's settings, as it does when the helpers are busy and the caller runs it."""
    met = threading.Barrier(2, timeout=60)  # items 0 and 1 run at once: the caller and a helper

    def chunk(i):
        if i < 2:
            met.wait()
        return np.geterr()["divide"], threading.current_thread().name

    before = parallel.num_threads()
    parallel.set_num_threads(2)
    try:
        with np.errstate(divide="raise"):
            seen = parallel.run(chunk, list(range(8)))
    finally:
        parallel.set_num_threads(before)
    assert len({name for _, name in seen}) == 2
    assert {mode for mode, _ in seen} == {"raise"}


def test_a_thread_takes_buffers_only_from_the_pool_of_its_own_program():
    """The running buffer pool is per thread (the helpers inherit their caller's): with one
    shared stack, a thread outside any program took buffers from another thread's program, and
    a program leaving could pull the pool from under a thread between its check and its use."""
    pool, inside, done = buffers.BufferPool(), threading.Event(), threading.Event()
    size = buffers.MIN_BYTES  # elements: large enough to be pooled
    got = {}

    met = threading.Barrier(2, timeout=60)  # items 0 and 1 run at once: the caller and a helper

    def chunk(i):
        if i < 2:
            met.wait()
        return buffers.empty((size,), np.float32), threading.current_thread().name

    def program():
        with pool:
            got["own"] = buffers.empty((size,), np.float32)
            got["chunks"] = parallel.run(chunk, list(range(4)))
            inside.set()
            done.wait(timeout=60)

    def outsider():
        inside.wait(timeout=60)
        got["outsider"] = buffers.empty((size,), np.float32)
        done.set()

    before = parallel.num_threads()
    parallel.set_num_threads(2)
    try:
        run_threads([program, outsider])
    finally:
        parallel.set_num_threads(before)
    pooled = {id(b) for lst in pool._bases.values() for b in lst}
    assert got["own"].base is not None and id(got["own"].base) in pooled
    assert len({name for _, name in got["chunks"]}) == 2
    assert all(b.base is not None and id(b.base) in pooled for b, _ in got["chunks"]), "a helper missed the pool"
    assert got["outsider"].base is None, "a thread outside any program took a buffer from another's pool"


def test_each_thread_draws_dropout_masks_from_the_seed_it_set():
    """The numpy backend is one object shared by every model; a step seeds it and a dropout
    kernel then draws from it. With one shared generator, a thread that seeded between another
    thread's seed and draw changed that thread's masks (the generator is now per thread)."""
    backend = make_model("classification").backend
    assert draws_from_own_seed(backend)


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed")
def test_each_thread_draws_torch_dropout_masks_from_the_seed_it_set():
    assert draws_from_own_seed(make_model("classification", "torch").backend)


def draws_from_own_seed(backend) -> bool:
    """Thread 1 seeds, thread 2 seeds and draws, then thread 1 draws: each must get the
    numbers of a fresh generator with its own seed."""
    seeded, drawn, got = threading.Event(), threading.Event(), {}

    def draw():
        if backend.name == "numpy":
            return backend._rng().random(4).tobytes()
        import torch
        return torch.rand(4, generator=backend.generator("cpu")).numpy().tobytes()

    def expected(seed):
        if backend.name == "numpy":
            return np.random.default_rng(seed).random(4).tobytes()
        import torch
        return torch.rand(4, generator=torch.Generator().manual_seed(seed)).numpy().tobytes()

    def first():
        backend.seed(1)
        seeded.set()
        drawn.wait(timeout=60)
        got[1] = draw()

    def second():
        seeded.wait(timeout=60)
        backend.seed(2)
        got[2] = draw()
        drawn.set()

    run_threads([first, second])
    return all(got[seed] == expected(seed) for seed in (1, 2))
