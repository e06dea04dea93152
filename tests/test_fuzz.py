"""Fuzzing through the whole pipeline: parse, check, differentiate, compile, import, run.

The generators and the oracle live in the ``fuzz`` package at the repository
root (``python -m fuzz.run`` drives the same ones for 100,000 inputs). Here
hypothesis draws the generators' random choices (``st.randoms``), so a
failing input is shrunk and printed. An input passes when dlc compiles it
into a module that imports and runs on data of the declared shapes, or
refuses it with a DlcError that points into the file; anything else fails.

Failures of a bug already reported (``fuzz.KNOWN_BUGS``) are tolerated by
the property tests, which would otherwise fail at random on it; each known
bug has a reproducer below, marked xfail(strict=True), so that a fix shows.
"""

from __future__ import annotations

import collections
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

import fuzz

from .conftest import ROOT

#: Per-test seconds before an input counts as a hang.
TIME_LIMIT = 30.0
SEEDS = fuzz.seed_sources()
SEEN: collections.Counter[str] = collections.Counter()  # known bugs met, for the curious (pytest -s)


def fuzz_settings(n: int) -> settings:
    """``n`` examples per test, whatever the profile says: the suite's inputs add up to about a thousand.

    Longer campaigns are ``python -m fuzz.run --count N`` (and ``fuzz.backends``), outside the suite.
    """
    return settings(
        max_examples=n,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.large_base_example,
        ],
    )


def judge_text(text: str) -> None:
    note(repr(text))
    try:
        fuzz.check_source(text, "fuzz.dlc", seconds=TIME_LIMIT)
    except fuzz.Failure as failure:
        bug = fuzz.known_bug(failure, text)
        if bug is None:
            raise AssertionError(f"{failure}\n\n{failure.detail}\n\ninput:\n{text}") from None
        SEEN[bug] += 1


def judge_bytes(data: bytes, folder: Path) -> None:
    note(repr(data))
    path = folder / "fuzz.dlc"
    path.write_bytes(data)
    try:
        fuzz.check_file(path, seconds=TIME_LIMIT)
    except fuzz.Failure as failure:
        text = data.decode("utf-8", "replace")
        bug = fuzz.known_bug(failure, text)
        if bug is None:
            raise AssertionError(f"{failure}\n\n{failure.detail}\n\ninput:\n{data!r}") from None
        SEEN[bug] += 1


randoms = st.randoms(use_true_random=False, note_method_calls=False)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# --------------------------------------------------------------- generated models


@fuzz_settings(250)
@given(rng=randoms)
def test_generated_models(rng: random.Random) -> None:
    judge_text(fuzz.generate_model(rng))


@fuzz_settings(200)
@given(rng=randoms, wrong=st.sampled_from([0.02, 0.05, 0.1, 0.3]))
def test_near_valid_models(rng: random.Random, wrong: float) -> None:
    judge_text(fuzz.generate_model(rng, wrong=wrong))


@fuzz_settings(150)
@given(rng=randoms)
def test_mutated_generated_models(rng: random.Random) -> None:
    judge_text(fuzz.mutate_text(rng, fuzz.generate_model(rng)))


def test_generator_makes_models_that_compile() -> None:
    """The generator is not degenerate: most of its models compile, with every kind of statement."""
    outcomes = collections.Counter()
    texts = []
    for i in range(150):
        text = fuzz.generate_model(random.Random(i))
        texts.append(text)
        try:
            outcomes[fuzz.check_source(text, run=False).status] += 1
        except fuzz.Failure:
            outcomes["failure"] += 1
    assert outcomes["compiled"] >= 90, outcomes
    joined = "\n".join(texts)
    for word in (
        "input ",
        "target ",
        "param ",
        "const ",
        "output ",
        "loss ",
        "train {",
        "model ",
        "@",
        "concat(",
        "softmax(",
        "logsumexp(",
        "transpose(",
        "axis = ",
        "**",
        "^",
        "sum(",
        "#",
    ):
        assert word in joined, word


# --------------------------------------------------------------- mutations of real models


@fuzz_settings(250)
@given(rng=randoms, seed=st.sampled_from(SEEDS))
def test_mutated_examples(rng: random.Random, seed: tuple[str, str]) -> None:
    judge_text(fuzz.mutate_text(rng, seed[1]))


@fuzz_settings(150)
@given(rng=randoms, seed=st.sampled_from(SEEDS))
def test_byte_mutations_through_compile(rng: random.Random, seed: tuple[str, str], folder: Path) -> None:
    judge_bytes(fuzz.mutate_bytes(rng, seed[1].encode("utf-8")), folder)


EXAMPLES = sorted((ROOT / "examples").glob("*.dlc"))


@fuzz_settings(150)
@given(data=st.data())
def test_random_byte_edits_of_examples(data: st.DataObject, folder: Path) -> None:
    """Like tests/test_mutation.py's random edits, but bytes, and through compile and run."""
    source = data.draw(st.sampled_from(EXAMPLES)).read_bytes()
    start = data.draw(st.integers(0, len(source)))
    end = data.draw(st.integers(start, min(len(source), start + 40)))
    insert = data.draw(
        st.binary(max_size=12) | st.sampled_from([b"\xef\xbb\xbf", b"\x00", b"\xff\xfe", b"\r"])
    )
    judge_bytes(source[:start] + insert + source[end:], folder)


# --------------------------------------------------------------- the grammar itself


def _lark_strategy() -> st.SearchStrategy[str]:
    from hypothesis.extra.lark import from_lark
    from lark import Lark

    from dlc.frontend.grammar import grammar_text

    grammar = Lark(grammar_text(), parser="lalr", lexer="basic")
    explicit: dict[str, st.SearchStrategy[str]] = {}
    for term in grammar.terminals:
        if term.pattern.type == "str":
            explicit[term.name] = st.just(term.pattern.value + " ")
        elif term.name == "NAME":
            names = st.sampled_from(
                ["x", "y", "W", "b", "f", "h", "np", "lambda", "sum", "tanh", "sgd", "zeros"]
            )
            explicit[term.name] = (names | st.from_regex(term.pattern.value, fullmatch=True)).map(
                lambda s: s + " "
            )
        elif term.name == "NUMBER":
            numbers = st.sampled_from(fuzz.NUMBERS)
            explicit[term.name] = (numbers | st.from_regex(term.pattern.value, fullmatch=True)).map(
                lambda s: s + " "
            )
        elif term.name == "COMMENT":
            explicit[term.name] = st.text(max_size=20).map(lambda s: "#" + s.replace("\n", " ") + "\n")
        else:
            explicit[term.name] = st.from_regex(term.pattern.value, fullmatch=True)
    return from_lark(grammar, explicit=explicit)


@fuzz_settings(30)
@given(data=st.data())
def test_sentences_of_the_grammar(data: st.DataObject) -> None:
    judge_text(data.draw(_lark_strategy()))


@fuzz_settings(100)
@given(rng=randoms)
def test_random_walks_of_the_grammar(rng: random.Random) -> None:
    judge_text(fuzz.lark_sentence(rng))


# --------------------------------------------------------------- the oracle itself


def test_oracle_accepts_good_and_refused_models() -> None:
    assert fuzz.check_source("param w : [] = zeros\nloss (w - 3) ** 2\n").status == "compiled"
    rejected = fuzz.check_source("param w : [] = zeros\nloss (w - 3) ** \n")
    assert rejected.status == "rejected" and "end of file" in rejected.message


def test_oracle_catches_a_broken_module() -> None:
    from dlc.compiler import compile_source
    from dlc.frontend import load_source

    text = compile_source(load_source("param w : [] = zeros\nloss (w - 3) ** 2\n"))
    with pytest.raises(fuzz.Failure) as info:
        fuzz.check_module_text(text.replace("def init_params(seed=0):", "def init_params(seed=0):\n    1/0"))
    assert info.value.kind == "ZeroDivisionError" and info.value.stage == "run"
    with pytest.raises(fuzz.Failure) as info:
        fuzz.check_module_text('"""\\N"""\n')
    assert info.value.kind == "GeneratedSyntaxError"


def test_oracle_times_out() -> None:
    with pytest.raises(fuzz.Hang), fuzz.time_limit(0.2):
        while True:
            pass


# --------------------------------------------------------------- known bugs, one reproducer each

REPRODUCERS: dict[str, list[str]] = {}
#: Inputs of bugs found by this fuzzing and fixed since (commit b327dcb): they must stay fixed.
FIXED = [
    "param w : [] = zeros\nloss (w - 1e300 * 1e300) ** 2\n",
    "param w : [2] = zeros\nloss sum(w) * 2 ** 2 ** 2 ** 2 ** 2\n",
    "param w : [2] = zeros\nloss sum(w) * exp(1000)\n",
    "param w : [] = zeros\nloss w * 9 ** 9 ** 9\n",
    "param w : [] = zeros\nloss w * 3 ** -123456789012345678901234567890\n",
    "param W : [" + ", ".join(["1"] * 65) + "] = zeros\nloss sum(W)\n",
    "input x : [3]\nparam w : [] = zeros\nloss softmax_cross_entropy(x, softmax(x)) + w ** 2\n",
    # fixed since: a softmax that is its own cross-entropy's target, a target without an
    # input, huge uniform scales, constant factors in the
    # formula printer, np.e, NaN and infinite folded constants, dlc's functions of numbers,
    # integers past 2**53, coefficients past the float range
    "target y : [2]\nparam m : [2] = zeros\nloss sum((m - y) ** 2)\n",
    "param w : [2] = uniform(1e308)\nloss sum(w ** 2)\n",
    "param w : [] = zeros\nloss sin(-0.5) * w\n",
    "param w : [] = zeros\nloss -log(2) * w\n",
    "param w : [] = zeros\nloss w * exp(1)\n",
    "param w : [] = zeros\nloss 0 ** w\n",
    "param w : [] = zeros\nloss w / (w - w)\n",
    "param w : [] = zeros\nloss w * softplus(-8)\n",
    "param w : [] = zeros\nloss log(w - w)\n",
    "param w : [] = zeros\nloss w + 8 / softplus(-8)\n",
    "param w : [] = zeros\nloss w + sin(123456789012345678901234567890)\n",
    "param w : [2] = zeros\nloss sum(w * 1e308 * 10)\n",
    # an output that reads the target: refused now (predict used to read an undefined Y)
    "input x : [2]\ntarget y : [2]\nparam W : [2, 2] = glorot\noutput W @ x - y\nloss mse(W @ x, y)\n",
    # sqrt(-h * h), which SymPy makes I*|h|: the module computed in complex numbers
    "input h : [2]\nparam w : [2] = zeros\nloss sum(sqrt(-h * h) * w)\n",
    # a cotangent that cancels to 0 once shared terms are pulled out, printed as the number 0
    "param s : [3] = zeros\ninput y : [5, 3]\nloss mse(y @ s, y @ s + 1)\n",
    # a sum with a number such as exp(tanh(1/2) + 1/2), printed where SymPy does not evaluate:
    # ordering its terms recursed without end; and (-5) ** e, a number with no real value
    "param w : [1] = zeros\nloss exp(0.5 + tanh(0.5)) + sum(w ** 2)\n",
    "param w : [] = zeros\nloss w + (-5) ** exp(1)\n",
    # a softmax computed with its cross-entropy although something read it before the loss
    "input x : [3]\nparam w : [2] = zeros\nloss softmax_cross_entropy(x, tanh(softmax(x))) + sum(w ** 2)\n",
    "input x : [3]\ntarget y : [3]\nparam w : [3] = zeros\n"
    "loss sum(softmax(x * w) * w) + softmax_cross_entropy(x * w, y)\n",
    # log(-w / w): once fused, -w / w is the number -1, and log(-1) was inlined as I*pi
    "param w : [] = normal(1)\ninput x : [3, 3]\nloss log(-w / w)\n",
]


def test_every_known_bug_has_a_reproducer() -> None:
    assert set(REPRODUCERS) == set(fuzz.KNOWN_BUGS)


@pytest.mark.parametrize("source", FIXED, ids=[f"fixed{i}" for i in range(len(FIXED))])
def test_fixed_bug_stays_fixed(source: str) -> None:
    fuzz.check_source(source, seconds=TIME_LIMIT)


@pytest.mark.parametrize(
    ("bug", "source"),
    [
        pytest.param(
            bug, src, id=f"{bug}-{i}", marks=pytest.mark.xfail(strict=True, reason=fuzz.KNOWN_BUGS[bug][0])
        )
        for bug, sources in REPRODUCERS.items()
        for i, src in enumerate(sources)
    ],
)
def test_known_bug(bug: str, source: str) -> None:
    try:
        fuzz.check_source(source, seconds=TIME_LIMIT)
    except fuzz.Failure as failure:
        assert fuzz.known_bug(failure, source) == bug, (
            f"{failure}: classified as {fuzz.known_bug(failure, source)}"
        )
        raise AssertionError(f"{bug}: {failure}") from None


# --------------------------------------------------------------- the long-run driver


@pytest.mark.slow
def test_fuzz_run_command(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "fuzz.run",
            "--count",
            "150",
            "--seed",
            "7",
            "--jobs",
            "2",
            "--no-save",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in run.stderr, run.stderr
    assert "inputs tried: 150" in run.stdout, run.stdout
    summary = json.loads(out.read_text())
    assert summary["tried"] == 150 == sum(summary["outcomes"].values())
    assert run.returncode == (1 if summary["by_type"] else 0)
    kinds = {k.split(":")[0] for k in summary["outcomes"]}
    assert kinds == set(fuzz.KINDS)


@pytest.mark.slow
def test_fuzz_run_survives_a_dying_worker(tmp_path: Path) -> None:
    out = tmp_path / "summary.json"
    env = dict(os.environ, DLC_FUZZ_CRASH_AT="37")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "fuzz.run",
            "--count",
            "60",
            "--seed",
            "7",
            "--jobs",
            "2",
            "--chunk",
            "20",
            "--no-save",
            "--quiet",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    summary = json.loads(out.read_text())
    assert summary["tried"] == 60, summary
    assert summary["by_type"].get("WorkerDied") == 1
    assert summary["examples"]["WorkerDied@9"] == [37]
    assert run.returncode == 1
