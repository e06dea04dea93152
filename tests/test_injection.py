"""Hostile model files (tests/hostile/) compile into safe modules, or are refused with a position.

Each file in tests/hostile/ starts with ``# hostile: WHAT IT TRIES``; a file
the language must refuse has a second line ``# rejects: MESSAGE-SUBSTRING``.

For every file that compiles, through the command line (``dlc compile`` in a
subprocess) and through the API (``dlc.compiler.compile_source``):

- the module text is valid Python (``ast.parse``) and the same both ways;
- it imports, and ``init_params``, ``loss``, ``value_and_grad``,
  ``train_step`` and ``predict`` run on random data of the declared shapes;
- no name the module assigns inside a function is one of its module-level
  names (a helper, ``np``, ``DTYPE`` ...), so none is shadowed;
- the model gives the same loss, gradients and output as the same model with
  every name replaced by a plain one (``plain0``, ``plain1`` ...);
- the CANARY never appears: the files try, in comments and names, to make
  code run that would create a file ``CANARY`` in the working directory,
  which is a fresh temporary folder.

A model's *file name* is hostile input too: models copied to names with
quotes, backslashes and line breaks compile into the same safe modules.
"""

from __future__ import annotations

import ast as pyast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dlc.compiler import compile_source, load_module
from dlc.errors import DlcError
from dlc.frontend import ast, load, load_source
from dlc.frontend.parser import parse

from .conftest import ROOT

CORPUS = ROOT / "tests" / "hostile"
FILES = sorted(CORPUS.glob("*.dlc"))
MIN_FILES = 25
CANARY = "CANARY"
BATCH = 4

_HOSTILE = re.compile(r"# hostile: (.+)")
_REJECTS = re.compile(r"# rejects: (.+)")


def header(path: Path) -> tuple[str, str | None]:
    """The file's description and, for a file that must be refused, the expected message."""
    lines = path.read_bytes().decode("utf-8", "replace").splitlines()
    what = _HOSTILE.fullmatch(lines[0].rstrip("\r"))
    assert what, f"{path.name}: the first line must be '# hostile: WHAT IT TRIES'"
    rejects = _REJECTS.fullmatch(lines[1].rstrip("\r")) if len(lines) > 1 else None
    return what[1], rejects[1].strip() if rejects else None


VALID = [p for p in FILES if header(p)[1] is None]
REJECTED = [p for p in FILES if header(p)[1] is not None]


def ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def random_data(module: Any, seed: int = 1) -> tuple[Any, Any]:
    rng = np.random.default_rng(seed)
    dtype = module.DTYPE if not isinstance(module, dict) else module["DTYPE"]
    shapes = (module.INPUT_SHAPE, module.TARGET_SHAPE)
    X, Y = (None if s is None else rng.normal(size=(BATCH, *s)).astype(dtype) for s in shapes)
    return X, Y


def exercise(module: Any) -> dict[str, Any]:
    """Run every entry point of a compiled module on random data; the numbers it gave."""
    params = module.init_params(0)
    assert set(params) == set(module.PARAM_SHAPES)
    for k, v in params.items():
        assert v.shape == tuple(module.PARAM_SHAPES[k]), k
    X, Y = random_data(module)
    value = module.loss(params, X, Y)
    again, grads = module.value_and_grad(params, X, Y)
    assert np.isfinite(value) and value == pytest.approx(again, rel=1e-6)
    assert set(grads) == set(params)
    for k, g in grads.items():
        assert np.shape(g) == params[k].shape, k
        assert np.all(np.isfinite(g)), k
    try:
        output = np.asarray(module.predict(params, X))
    except NotImplementedError:
        output = None
    before = {k: v.copy() for k, v in params.items()}
    step_loss = module.train_step(params, module.init_state(params), X, Y)
    assert step_loss == pytest.approx(value)
    assert any(not np.array_equal(before[k], params[k]) for k in params) or not any(
        np.any(g) for g in grads.values()
    )
    return {"loss": value, "grads": grads, "output": output, "params": before}


def module_shadowing(source: str) -> set[str]:
    """Module-level names (helpers, ``np``, ``DTYPE`` ...) a function both assigns and uses as the module's.

    A function that assigns a name makes every use of it in that function
    local; that is harmless unless the function also calls it or reads an
    attribute of it (``sigmoid(z)``, ``np.exp``), expecting the module's.
    """
    tree = pyast.parse(source)
    top: set[str] = set()
    for node in tree.body:
        if isinstance(node, (pyast.FunctionDef, pyast.ClassDef)):
            top.add(node.name)
        elif isinstance(node, (pyast.Import, pyast.ImportFrom)):
            top |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, pyast.Assign):
            top |= {t.id for t in node.targets if isinstance(t, pyast.Name)}
    clashes: set[str] = set()
    for fn in (n for n in pyast.walk(tree) if isinstance(n, pyast.FunctionDef)):
        local = {a.arg for a in (*fn.args.args, *fn.args.kwonlyargs)}
        local |= {
            n.id for n in pyast.walk(fn) if isinstance(n, pyast.Name) and isinstance(n.ctx, pyast.Store)
        }
        used = {
            n.func.id for n in pyast.walk(fn) if isinstance(n, pyast.Call) and isinstance(n.func, pyast.Name)
        }
        used |= {
            n.value.id
            for n in pyast.walk(fn)
            if isinstance(n, pyast.Attribute) and isinstance(n.value, pyast.Name)
        }
        used |= {"DTYPE", "EPS", "TRAINING", "PARAM_SHAPES"} & {
            n.id for n in pyast.walk(fn) if isinstance(n, pyast.Name) and isinstance(n.ctx, pyast.Load)
        }
        clashes |= local & top & used
    return clashes


# ------------------------------------------------------------ renaming


def plain_names(source: str) -> tuple[str, dict[str, str]]:  # noqa: C901 - one branch per node type
    """``source`` with every user-chosen name replaced by ``plainN``; the mapping old -> new.

    Names are found in the AST, so words in comments, built-in functions and
    their keyword arguments, initializers and training settings stay as they are.
    """
    module = parse(source)
    functions = {s.name.text for s in module.statements if isinstance(s, ast.FnDef)}
    idents: list[ast.Ident] = []
    exprs: list[ast.Expr] = []
    for stmt in module.statements:
        if isinstance(stmt, (ast.InputDecl, ast.TargetDecl, ast.ParamDecl, ast.ConstDecl)):
            idents.append(stmt.name)
        elif isinstance(stmt, ast.FnDef):
            idents += [stmt.name, *stmt.params]
            exprs.append(stmt.body)
        elif isinstance(stmt, ast.LetDef):
            idents.append(stmt.name)
            exprs.append(stmt.body)
        elif isinstance(stmt, (ast.OutputStmt, ast.LossStmt)):
            exprs.append(stmt.expr)
    while exprs:
        e = exprs.pop()
        if isinstance(e, ast.Name):
            idents.append(e.ident)
        elif isinstance(e, ast.Call):
            if e.func.text in functions:
                idents += [e.func, *(k.ident for k in e.keywords)]
            exprs += [*e.args, *(k.value for k in e.keywords)]
        elif isinstance(e, ast.BinOp):
            exprs += [e.left, e.right]
        elif isinstance(e, ast.Neg):
            exprs.append(e.operand)
    mapping: dict[str, str] = {}
    for ident in sorted(idents, key=lambda i: (i.span.line, i.span.column)):
        mapping.setdefault(ident.text, f"plain{len(mapping)}")
    starts = [0]
    for line in source.split("\n"):
        starts.append(starts[-1] + len(line) + 1)
    edits = sorted(
        {(starts[i.span.line - 1] + i.span.column - 1, len(i.text), mapping[i.text]) for i in idents},
        reverse=True,
    )
    text = source
    for offset, length, new in edits:
        assert text[offset : offset + length] in mapping, (offset, text[offset : offset + length])
        text = text[:offset] + new + text[offset + length :]
    return text, mapping


def test_plain_names_renames_only_names() -> None:
    source = (
        "input x : [2]\nparam W : [2] = zeros  # W x sum\nf(W, v) = W @ v\n"
        "loss sum(f(v = x, W = W) * x, axis = 0)\n"
    )
    text, mapping = plain_names(source)
    assert mapping == {"x": "plain0", "W": "plain1", "f": "plain2", "v": "plain3"}
    assert text == (
        "input plain0 : [2]\nparam plain1 : [2] = zeros  # W x sum\n"
        "plain2(plain1, plain3) = plain1 @ plain3\n"
        "loss sum(plain2(plain3 = plain0, plain1 = plain1) * plain0, axis = 0)\n"
    )


# ------------------------------------------------------------ the corpus


def test_corpus_is_large_enough() -> None:
    assert len(FILES) >= MIN_FILES
    assert len(VALID) >= 20 and len(REJECTED) >= 5
    canary_tries = [p for p in FILES if CANARY in p.read_bytes().decode("utf-8", "replace")]
    assert len(canary_tries) >= len(FILES) // 2


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a fresh folder, where a CANARY would show."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("path", VALID, ids=ids(VALID))
def test_hostile_model_compiles_to_a_safe_module(path: Path, in_tmp: Path) -> None:
    model = load(path)
    for dtype in ("float64", "float32"):
        source = compile_source(model, dtype=dtype)
        pyast.parse(source)
        assert not module_shadowing(source), module_shadowing(source)
        module = load_module(source, f"hostile_{path.stem}")
        result = exercise(module)
        assert np.asarray(result["grads"][next(iter(result["grads"]))]).dtype == np.dtype(dtype)
    assert not (in_tmp / CANARY).exists()


@pytest.mark.parametrize("path", VALID, ids=ids(VALID))
def test_hostile_model_compiles_to_a_safe_native_module(path: Path, in_tmp: Path) -> None:
    """The LLVM backend's module: valid Python, no shadowing, the NumPy module's numbers, no canary."""
    model = load(path)
    source = compile_source(model, backend="llvm")
    pyast.parse(source)
    assert not module_shadowing(source), module_shadowing(source)
    got = exercise(load_module(source, f"hostile_native_{path.stem}"))
    want = exercise(load_module(compile_source(model), f"hostile_{path.stem}"))
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-12, abs=1e-300)
    for name, g in got["grads"].items():
        scale = max(1.0, float(np.max(np.abs(want["grads"][name]))))
        np.testing.assert_allclose(g, want["grads"][name], rtol=1e-11, atol=1e-12 * scale, err_msg=name)
    assert not (in_tmp / CANARY).exists()


@pytest.mark.parametrize("path", VALID, ids=ids(VALID))
def test_hostile_names_compute_what_plain_names_do(path: Path, in_tmp: Path) -> None:
    text = path.read_text(encoding="utf-8")
    plain, mapping = plain_names(text)
    assert plain != text or not mapping
    hostile = load_module(compile_source(load_source(text, path.name)), "hostile")
    tame = load_module(compile_source(load_source(plain, path.name)), "tame")
    assert {mapping[k]: v for k, v in hostile.PARAM_SHAPES.items()} == tame.PARAM_SHAPES
    got, want = exercise(hostile), exercise(tame)
    assert got["loss"] == pytest.approx(want["loss"], rel=1e-12, abs=1e-300)
    for name, g in got["grads"].items():
        np.testing.assert_allclose(g, want["grads"][mapping[name]], rtol=1e-11, atol=1e-300, err_msg=name)
    for name, p in got["params"].items():
        np.testing.assert_array_equal(p, want["params"][mapping[name]])
    if got["output"] is not None:
        np.testing.assert_allclose(got["output"], want["output"], rtol=1e-12)
    assert not (in_tmp / CANARY).exists()


@pytest.mark.parametrize("path", REJECTED, ids=ids(REJECTED))
def test_hostile_model_is_refused_with_a_position(path: Path, in_tmp: Path) -> None:
    _, message = header(path)
    with pytest.raises(DlcError) as info:
        load(path)
    err = info.value
    assert err.span is not None, err.render()
    assert message and message in err.message, err.render()
    lines = path.read_bytes().decode("utf-8", "replace").split("\n")
    assert 3 <= err.span.line <= len(lines), "the mistake is below the two header lines"
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: error: ", err.render())
    assert not (in_tmp / CANARY).exists()


# ------------------------------------------------------------ hostile file names

FILE_NAMES = [
    'x"""+__import__("os").system("touch CANARY")+""".dlc',
    "x'''+open('CANARY','w').write('1')+'''.dlc",
    "back\\slash\\N{x}\\u12.dlc",
    "new\nline\r.dlc",
    "ünïcödé ⊙ model.dlc",
    "#comment.dlc",
    "1starts with a digit.dlc",
    "lambda.dlc",
    ".dlc",
]


@pytest.mark.parametrize("name", FILE_NAMES, ids=[f"name{i}" for i in range(len(FILE_NAMES))])
def test_hostile_file_name(name: str, in_tmp: Path) -> None:
    path = in_tmp / name
    path.write_bytes((CORPUS / "module_level_names.dlc").read_bytes())
    model = load(path)
    assert model.graph.name.isidentifier() and model.graph.name.isascii()
    for backend in ("numpy", "llvm"):
        source = compile_source(model, backend=backend)
        pyast.parse(source)
        exercise(load_module(source, "named"))
    assert not (in_tmp / CANARY).exists()


# ------------------------------------------------------------ the command line

RUNNER = r"""
import importlib, json, sys
import numpy as np
sys.path.insert(0, ".")
from test_injection_exercise import exercise
results = {}
for stem in sys.argv[1:]:
    try:
        r = exercise(importlib.import_module("hostile_" + stem))
        grads = {k: np.asarray(g).tolist() for k, g in r["grads"].items()}
        results[stem] = {"loss": r["loss"], "grads": grads}
    except Exception as exc:
        results[stem] = {"error": repr(exc)}
json.dump(results, sys.stdout)
"""


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``dlc compile`` of every file (subprocesses, started together) and one import of each result."""
    work = tmp_path_factory.mktemp("hostile-cli")
    named = work / FILE_NAMES[0]
    named.write_bytes((CORPUS / "module_level_names.dlc").read_bytes())
    jobs = {p.stem: (p, f"hostile_{p.stem}.py") for p in FILES}
    jobs["hostile_file_name"] = (named, "hostile_hostile_file_name.py")
    procs = {
        stem: subprocess.Popen(
            [sys.executable, "-m", "dlc", "compile", str(p), "-o", out],
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for stem, (p, out) in jobs.items()
    }
    compiled = {}
    for stem, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        compiled[stem] = (proc.returncode, out, err)
    # The runner imports the modules as files, in a fresh interpreter, from the same folder.
    helper = Path(__file__).read_text(encoding="utf-8")
    start, end = helper.index("def random_data("), helper.index("def module_shadowing(")
    (work / "test_injection_exercise.py").write_text(
        "import numpy as np\nimport pytest\nfrom typing import Any\nBATCH = 4\n\n" + helper[start:end],
        encoding="utf-8",
    )
    stems = [s for s, (code, _, _) in compiled.items() if code == 0]
    run = subprocess.run(
        [sys.executable, "-c", RUNNER, *stems], cwd=work, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    return {"work": work, "compiled": compiled, "ran": json.loads(run.stdout)}


@pytest.mark.slow
@pytest.mark.parametrize("path", VALID, ids=ids(VALID))
def test_cli_compiles_hostile_model(path: Path, cli: dict[str, Any]) -> None:
    code, _, err = cli["compiled"][path.stem]
    assert code == 0, err
    assert "Traceback" not in err
    written = (cli["work"] / f"hostile_{path.stem}.py").read_text(encoding="utf-8")
    assert written == compile_source(load(path)), "the command line and the API write the same module"
    ran = cli["ran"][path.stem]
    assert "error" not in ran, ran
    mine = exercise(load_module(written, path.stem))
    assert ran["loss"] == pytest.approx(mine["loss"], rel=1e-12)
    for k, g in mine["grads"].items():
        np.testing.assert_allclose(ran["grads"][k], g, rtol=1e-12, atol=1e-300)
    assert not (cli["work"] / CANARY).exists()


@pytest.mark.slow
@pytest.mark.parametrize("path", REJECTED, ids=ids(REJECTED))
def test_cli_refuses_hostile_model(path: Path, cli: dict[str, Any]) -> None:
    code, _, err = cli["compiled"][path.stem]
    _, message = header(path)
    assert code == 2, err
    assert "Traceback" not in err
    first = err.splitlines()[0]
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: error: .*{re.escape(str(message))}", first), first
    assert not (cli["work"] / f"hostile_{path.stem}.py").exists()
    assert not (cli["work"] / CANARY).exists()


@pytest.mark.slow
def test_cli_hostile_file_name(cli: dict[str, Any]) -> None:
    code, _, err = cli["compiled"]["hostile_file_name"]
    assert code == 0, err
    assert "error" not in cli["ran"]["hostile_file_name"]
    assert not (cli["work"] / CANARY).exists()


# ------------------------------------------------------------ look-alike digits

LOOKALIKE_NUMBERS = {
    "arabic_indic_shape": "param w : [\u0663] = zeros\nloss sum(w ** 2)\n",  # [٣] reads as [3]
    "bold_digit_number": "param w : [] = zeros\nloss (w - \U0001d7d7) ** 2\n",  # 𝟗 reads as 9
    "devanagari_setting": "param w : [] = zeros\nloss w ** 2\ntrain { epochs = \u0969 }\n",  # ३ reads as 3
}


@pytest.mark.parametrize("case", list(LOOKALIKE_NUMBERS))
def test_non_ascii_digits_are_refused(case: str) -> None:
    source = LOOKALIKE_NUMBERS[case]
    with pytest.raises(DlcError) as info:
        load_source(source, "digits.dlc")
    assert info.value.span is not None
