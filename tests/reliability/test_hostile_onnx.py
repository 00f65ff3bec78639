"""Hostile ONNX files: a corpus built here (external data leading out of the model's folder,
tensors declaring terabytes, cycles, dangling inputs, duplicate names, wrong data types,
truncated and random bytes, a plugin kernel that raises) is refused with a DLError naming the
file, while

- nothing outside the model's folder is opened (a Python audit hook records every open), and
- memory stays bounded: each read runs under an address-space limit of the process's current
  size plus 1 GiB, so a reader that trusted a declared size would die with MemoryError here."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import dlbatch
from dlbatch.core.errors import DLError, DLModelFileError
from dlbatch.core.hookspecs import hookimpl
from dlbatch.core.plugins import manager
from tests.conftest import make_samples, tiny_model
from tests.core.test_onnx_io import foreign_classifier

_OPENED: list[str] | None = None


def _audit(event, args):
    if _OPENED is not None and event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


@contextlib.contextmanager
def _watched_and_bounded(extra_bytes: int = 1 << 30):
    """Record every file Python opens; limit the address space to what is mapped now plus
    `extra_bytes` (Linux), restored afterwards."""
    global _OPENED
    resource = pytest.importorskip("resource")
    limit = None
    status = Path("/proc/self/status")
    if status.exists():
        vm = next(int(line.split()[1]) * 1024 for line in status.read_text().splitlines() if line.startswith("VmSize"))
        limit = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (vm + extra_bytes, limit[1]))
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, limit)


# -- the corpus ------------------------------------------------------------------------------
def _init(proto, name):
    return next(t for t in proto.graph.initializer if t.name == name)


def _external(t: TensorProto, location: str, offset: int = 0, length: int | None = None) -> None:
    length = len(t.raw_data) if length is None else length
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = t.external_data.add()
        entry.key, entry.value = key, value


def _dims(t: TensorProto, dims) -> None:
    del t.dims[:]
    t.dims.extend(dims)


def _conv_weight_external(location, offset=0, length=None):
    proto = foreign_classifier()
    _external(_init(proto, "conv.weight"), location, offset, length)
    return proto


def _subgraph_reading(location):
    """An If node whose branch holds a Constant with external data."""
    proto = foreign_classifier()
    value = numpy_helper.from_array(np.zeros(6, np.float32), "v")
    _external(value, location)
    branch = helper.make_graph([helper.make_node("Constant", [], ["k"], value=value)], "b", [],
                               [helper.make_tensor_value_info("k", TensorProto.FLOAT, [6])])
    proto.graph.initializer.append(numpy_helper.from_array(np.array(True), "cond"))
    proto.graph.node.insert(0, helper.make_node("If", ["cond"], ["unused"], name="if", then_branch=branch,
                                                else_branch=branch))
    return proto


def _edited(edit):
    proto = foreign_classifier()
    edit(proto)
    return proto


def _dlbatch_file_with(edit, tmp: Path):
    path = tmp / "dl.onnx"
    model = tiny_model(solver_type="adam")
    dlbatch.train_dl_model_batch(model, make_samples(4))
    dlbatch.write_dl_model(model, path)
    proto = onnx.load(str(path))
    edit(proto)
    path.unlink()
    return proto


def _solver_tensor(proto):
    return max(proto.training_info[0].algorithm.initializer, key=lambda t: len(t.raw_data))  # a moment tensor


def _bomb(proto):
    proto.graph.initializer.append(numpy_helper.from_array(np.array([60_000, 60_000], np.int64), "bigshape"))
    proto.graph.node.extend([
        helper.make_node("ConstantOfShape", ["bigshape"], ["bomb"], name="bomb",
                         value=numpy_helper.from_array(np.array([1.0], np.float32))),
        helper.make_node("ReduceSum", ["bomb"], ["bombsum"], name="bombsum", keepdims=0),
        helper.make_node("Add", ["prob", "bombsum"], ["prob2"], name="bombadd")])
    proto.graph.output[0].name = "prob2"


def _expand_bomb(proto):
    proto.graph.initializer.extend([numpy_helper.from_array(np.array(1.0, np.float32), "one"),
                                    numpy_helper.from_array(np.array([50_000, 50_000], np.int64), "target")])
    proto.graph.node.extend([
        helper.make_node("Expand", ["one", "target"], ["wide"], name="expand_bomb"),
        helper.make_node("ReduceMax", ["wide"], ["widest"], name="widest", keepdims=0),
        helper.make_node("Add", ["prob", "widest"], ["prob2"], name="wideadd")])
    proto.graph.output[0].name = "prob2"


def _computed_shape_bomb(op):
    """A ConstantOfShape or Expand whose 8 GB target is computed (Abs), so shape inference
    cannot see the size and only constant folding meets it."""
    def edit(proto):
        proto.graph.initializer.extend([numpy_helper.from_array(np.array([40_000, 50_000], np.int64), "negshape"),
                                        numpy_helper.from_array(np.array(1.0, np.float32), "one")])
        make = (helper.make_node("ConstantOfShape", ["absshape"], ["bomb"], name="computed_bomb")
                if op == "ConstantOfShape" else helper.make_node("Expand", ["one", "absshape"], ["bomb"],
                                                                 name="computed_bomb"))
        proto.graph.node.extend([
            helper.make_node("Abs", ["negshape"], ["absshape"], name="absshape"), make,
            helper.make_node("ReduceSum", ["bomb"], ["bombsum"], name="bombsum", keepdims=0),
            helper.make_node("Add", ["prob", "bombsum"], ["prob2"], name="bombadd")])
        proto.graph.output[0].name = "prob2"
    return edit


def _cycle(proto):
    proto.graph.node[1].input[0] = "prob"  # the input normalisation reads the network's output


def _duplicate_node_output(proto):
    relu = next(n for n in proto.graph.node if n.op_type == "Relu")
    relu.output[0] = "c"


def _raw_swap(proto, name, dtype):
    _init(proto, name).data_type = dtype


def _int_conv_weight(proto):
    t = _init(proto, "conv.weight")
    t.CopyFrom(numpy_helper.from_array(np.ones((6, 3, 3, 3), np.int64), "conv.weight"))


def _no_data_terabytes(proto):
    t = _init(proto, "conv.weight")
    t.ClearField("raw_data")
    _dims(t, [2 ** 20, 2 ** 20, 3, 3])


def build_corpus(folder: Path, tmp: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a pattern its error must match). External data files: `inside.bin`
    (648 zero bytes, in the folder) and `../outside.bin` (the secret next to the folder)."""
    (folder / "inside.bin").write_bytes(bytes(648))
    secret = str(folder.parent / "outside.bin")
    protos = {
        "external_parent": (_conv_weight_external("../outside.bin"), "outside the model's folder"),
        "external_nested_parent": (_conv_weight_external("sub/../../outside.bin"), "outside the model's folder"),
        "external_absolute": (_conv_weight_external(secret), "absolute path"),
        "external_in_subgraph": (_subgraph_reading("../outside.bin"), "outside the model's folder"),
        "external_terabyte_length": (_conv_weight_external("inside.bin", 0, 10 ** 12), "truncated"),
        "external_offset_beyond_file": (_conv_weight_external("inside.bin", 10 ** 10, 648), "truncated"),
        "external_length_not_dims": (_conv_weight_external("inside.bin", 0, 100), r"declares shape .*648 bytes"),
        "external_missing_file": (_conv_weight_external("nothing.bin"), "missing"),
        "external_shared_bytes": (_edited(lambda p: [_external(_init(p, "conv.weight"), "inside.bin"),
                                                     _external(_init(p, "conv.bias"), "inside.bin", 600, 24)]),
                                  "share bytes"),
        "terabyte_dims_no_data": (_edited(_no_data_terabytes), "one value field"),
        "terabyte_dims_short_raw": (_edited(lambda p: _dims(_init(p, "conv.weight"), [2 ** 20, 2 ** 20, 3, 3])),
                                    r"declares shape \[1048576, 1048576, 3, 3\] \(39582418599936 bytes\) "
                                    r"but holds 648"),
        "negative_dims": (_edited(lambda p: _dims(_init(p, "conv.weight"), [-6, 3, 3, -3])), "negative dimension"),
        "overflowing_dims": (_edited(lambda p: _dims(_init(p, "conv.weight"), [2 ** 62, 4, 8, 3])), "overflow"),
        "constant_of_shape_14_gb": (_edited(_bomb), r"node 'bomb' makes tensor 'bomb' of the fixed shape"),
        "expand_10_gb": (_edited(_expand_bomb), r"node 'expand_bomb' .* more than the 2147483648"),
        "constant_of_shape_computed_8_gb": (_edited(_computed_shape_bomb("ConstantOfShape")),
                                            r"node 'computed_bomb' \(ConstantOfShape\) works on constants and would"),
        "expand_computed_8_gb": (_edited(_computed_shape_bomb("Expand")),
                                 r"node 'computed_bomb' \(Expand\) works on constants and would"),
        "cycle": (_edited(_cycle), "topologically sorted"),
        "dangling_input": (_edited(lambda p: p.graph.node[3].input.__setitem__(1, "nowhere")), "'nowhere'"),
        "duplicate_initializer": (_edited(lambda p: p.graph.initializer.append(
            numpy_helper.from_array(np.ones((6, 3, 3, 3), np.float32), "conv.weight"))), "not unique"),
        "duplicate_node_output": (_edited(_duplicate_node_output), "single static assignment"),
        "int64_conv_weight": (_edited(_int_conv_weight), "unsupported type"),
        "raw_bytes_for_another_dtype": (_edited(lambda p: _raw_swap(p, "conv.weight", TensorProto.DOUBLE)),
                                        r"\(1296 bytes\) but holds 648"),
        "unknown_dtype": (_edited(lambda p: _raw_swap(p, "conv.weight", 999)), "data type type 999"),
        "string_image_input": (_edited(lambda p: setattr(p.graph.input[0].type.tensor_type, "elem_type",
                                                         TensorProto.STRING)), r"unsupported type: tensor\(string\)"),
        "dlbatch_solver_state_outside": (_dlbatch_file_with(lambda p: _external(_solver_tensor(p), "../outside.bin"),
                                                            tmp), "outside the model's folder"),
        "dlbatch_solver_state_terabytes": (_dlbatch_file_with(lambda p: _dims(_solver_tensor(p), [2 ** 40]), tmp),
                                           r"declares shape \[1099511627776\]"),
    }
    corpus = {}
    for name, (proto, pattern) in protos.items():
        path = folder / f"{name}.onnx"
        path.write_bytes(proto.SerializeToString())
        corpus[name] = (path, pattern)
    good = foreign_classifier().SerializeToString()
    dl = tmp / "whole.onnx"
    dlbatch.write_dl_model(tiny_model(solver_type="adam"), dl)
    dl_bytes = dl.read_bytes()
    rng = np.random.default_rng(17)
    raw = {
        "empty": (b"", "empty"),
        "truncated_foreign_half": (good[: len(good) // 2], "truncated or corrupt"),
        "truncated_dlbatch_tail": (dl_bytes[:-7], "truncated|corrupt|missing"),
        "random_bytes": (rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), "truncated or corrupt"),
        "text_file": (b"ir_version: 8\ngraph { node { op_type: 'Relu' } }\n" * 20, "truncated or corrupt|not a"),
    }
    for name, (data, pattern) in raw.items():
        path = folder / f"{name}.onnx"
        path.write_bytes(data)
        corpus[name] = (path, pattern)
    big = folder / "three_gib_sparse_file.onnx"
    with open(big, "wb") as fh:
        fh.truncate(3 << 30)  # sparse: no disk space used, but 3 GiB to read
    corpus[big.stem] = (big, "at most 2 GiB")
    return corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hostile")
    folder = tmp / "models"
    folder.mkdir()
    (tmp / "outside.bin").write_bytes(bytes(range(256)) * 2 + bytes(136))  # 648 bytes: would fit conv.weight
    return build_corpus(folder, tmp), tmp / "outside.bin"


def _refused(path: Path, pattern: str) -> str:
    with _watched_and_bounded() as opened:
        with pytest.raises(DLModelFileError) as info:
            dlbatch.read_dl_model(path)
    message = str(info.value)
    assert str(path) in message
    assert __import__("re").search(pattern, message), message
    folder = path.parent.resolve()
    assert path.stat().st_size > 2 ** 31 or any(Path(p).resolve() == path.resolve() for p in opened)  # hook works
    data_opened = [p for p in opened if not p.endswith((".py", ".pyc", ".so")) and "site-packages" not in p]
    outside = [p for p in data_opened if folder not in Path(p).resolve().parents]
    assert not outside, f"{path.name} made dlbatch open {outside}"
    return message


def test_every_hostile_file_is_refused_without_reading_outside_or_allocating_what_it_declares(corpus):
    files, secret = corpus
    refused = 0
    for name, (path, pattern) in files.items():
        _refused(path, pattern)
        refused += 1
    assert refused == len(files) >= 33
    print(f"\n{refused} hostile files refused")


def test_the_corpus_is_hostile_only_where_intended(corpus, tmp_path):
    """The same edits on a harmless target read fine: external data inside the folder of the
    right size, and the untouched classifier (so each refusal above is due to its edit)."""
    proto = foreign_classifier()
    t = _init(proto, "conv.weight")
    (tmp_path / "w.bin").write_bytes(t.raw_data)
    _external(t, "w.bin")
    (tmp_path / "ok.onnx").write_bytes(proto.SerializeToString())
    (tmp_path / "plain.onnx").write_bytes(foreign_classifier().SerializeToString())
    with _watched_and_bounded():
        a = dlbatch.read_dl_model(tmp_path / "ok.onnx")
        b = dlbatch.read_dl_model(tmp_path / "plain.onnx")
        if Path("/proc/self/status").exists():
            with pytest.raises(MemoryError):  # the bound the hostile reads ran under is real
                np.ones(2 ** 31, np.uint8)
    np.testing.assert_array_equal(a.state_dict()["conv.weight"], b.state_dict()["conv.weight"])


# -- a plugin kernel that raises ----------------------------------------------------------------
class _RaisingCelu:
    op_type = "Celu"

    def forward(self, ctx, inputs, attrs):
        raise RuntimeError("the plugin kernel crashed")

    def backward(self, ctx, saved, grads, attrs):
        raise RuntimeError("the plugin kernel crashed")


class _RaisingPlugin:
    @hookimpl
    def dlbatch_register_ops(self, register):
        register("numpy", "Celu", _RaisingCelu())


@pytest.fixture
def raising_celu():
    assert "Celu" not in manager.kernels("numpy")
    manager.register_plugin(_RaisingPlugin(), name="test-raising-celu")
    yield
    manager.registry.ops.get("numpy", {}).pop("Celu", None)


def test_an_op_whose_plugin_kernel_raises_is_a_dlbatch_error_naming_the_node(tmp_path, raising_celu):
    proto = foreign_classifier(extra_nodes=[helper.make_node("Celu", ["flat2"], ["celu"], name="my_celu")])
    next(n for n in proto.graph.node if n.op_type == "MatMul").input[0] = "celu"
    path = tmp_path / "celu.onnx"
    path.write_bytes(proto.SerializeToString())
    model = dlbatch.read_dl_model(path, backend="numpy")
    before = model.state_dict()
    image = np.random.default_rng(0).normal(0, 20, (8, 8, 3)).astype(np.float32)
    with pytest.raises(DLError, match=r"'my_celu' \(Celu\).*the plugin kernel crashed"):
        dlbatch.apply_dl_model(model, [{"image": image}])
    with pytest.raises(DLError, match=r"'my_celu' \(Celu\).*the plugin kernel crashed"):
        dlbatch.train_dl_model_batch(model, [{"image": image, "image_label_id": 0}])
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
